"""The master's own wheel: built from a source tree, or rebuilt from an installed wheel's RECORD."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import make_venv, pip, read_wheel

pytestmark = [pytest.mark.slow]

REBUILD = (
    "import json, sys; from bramble.software.own import own_wheel\n"
    "try:\n"
    "    w = own_wheel()\n"
    "except Exception as exc:\n"
    "    print(json.dumps({'error': str(exc)})); sys.exit(0)\n"
    "open(sys.argv[1], 'wb').write(w.data)\n"
    "print(json.dumps({'filename': w.filename}))\n"
)


def _rebuild_in(python: Path, out: Path) -> dict[str, str]:
    proc = subprocess.run(
        [str(python), "-c", REBUILD, str(out)], capture_output=True, text=True, cwd="/"
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, str] = json.loads(proc.stdout)
    return result


def test_built_wheel_is_the_source_trees(built_wheel: Path) -> None:
    import bramble

    files = read_wheel(built_wheel)
    assert built_wheel.name.split("-")[1] == bramble.__version__
    own = Path(bramble.__file__).parent
    for name in ("software/own.py", "provision/templates/user-data.j2", "telemetry/agent.c"):
        assert files[f"bramble/{name}"] == (own / name).read_bytes()


def test_an_installed_wheel_is_rebuilt_file_for_file(built_wheel: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", system_site_packages=True)
    installed = pip(python, "install", "--no-deps", "--no-index", str(built_wheel))
    assert installed.returncode == 0, installed.stderr
    result = _rebuild_in(python, tmp_path / "again.whl")
    assert result.get("filename") == built_wheel.name, result
    original, again = read_wheel(built_wheel), read_wheel(tmp_path / "again.whl")
    assert set(original) == set(again)
    record = next(k for k in original if k.endswith(".dist-info/RECORD"))
    assert {k for k in original if original[k] != again[k]} <= {record}
    assert sorted(original[record].splitlines()) == sorted(again[record].splitlines())
    # The same bytes every time: a node sees one hash for one version.
    assert _rebuild_in(python, tmp_path / "third.whl") == result
    assert (tmp_path / "third.whl").read_bytes() == (tmp_path / "again.whl").read_bytes()


def test_a_changed_installed_file_is_not_served(built_wheel: Path, tmp_path: Path) -> None:
    python = make_venv(tmp_path / "venv", system_site_packages=True)
    assert pip(python, "install", "--no-deps", "--no-index", str(built_wheel)).returncode == 0
    site = next((tmp_path / "venv/lib").glob("python3*/site-packages"))
    edited = site / "bramble/errors.py"
    edited.write_text(edited.read_text() + "\n# edited by hand\n")
    result = _rebuild_in(python, tmp_path / "again.whl")
    assert "bramble/errors.py was changed after bramble was installed" in result["error"]
