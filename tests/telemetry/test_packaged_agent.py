"""The compiled agent the wheel carries: found first, used only if safe and made for here.

The program the wheel puts beside native.py is stood in for by a real compiled agent (or a
cross-compiled one) at a path of the test's own: `native.PACKAGED` points there.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from bramble_testing import write_init_spec

from bramble.telemetry import native

CROSS = {"aarch64": "aarch64-linux-gnu-gcc", "armv7l": "arm-linux-gnueabihf-gcc"}


def _compile(cc: str, out: Path) -> Path:
    """The agent, statically linked as in a wheel, built with CC into OUT."""
    subprocess.run(
        [cc, *native.FLAGS, str(out), native.SOURCE, "-lm", "-static", "-s"],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory: a build on first start shows up here."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(native.CACHE_ENV, str(directory))
    return directory


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the wheel's program would be (telemetry/ of an installed package), still empty."""
    directory = tmp_path / "site-packages" / "bramble" / "telemetry"
    directory.mkdir(parents=True)
    monkeypatch.setattr(native, "PACKAGED", str(directory / "bramble-agent"))
    return directory / "bramble-agent"


def _needs(cc: str | None) -> str:
    if cc is None or shutil.which(cc) is None:
        pytest.skip(f"needs the C compiler {cc or 'cc'}")
    return cc


def test_the_packaged_program_comes_first_and_nothing_is_built(package: Path, cache: Path) -> None:
    _compile(_needs(native.compiler()), package)
    assert native.locate() == (str(package), "from the package", "")
    assert not cache.exists()
    assert native.prepare() == f"compiled, from the package ({package})"


def test_without_one_the_agent_is_built_on_this_machine(package: Path, cache: Path) -> None:
    _needs(native.compiler())
    path, origin, refused = native.locate()
    assert Path(path).parent == cache and origin == "built on this machine" and refused == ""


def test_a_packaged_program_for_another_machine_is_not_run(
    package: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = "armv7l" if native.this_arch() == "aarch64" else "aarch64"
    _compile(_needs(CROSS[other]), package)
    _needs(native.compiler())
    path, origin, refused = native.locate()
    assert Path(path).parent == cache and origin == "built on this machine"
    assert refused == f"the packaged agent is made for {other}, not {native.this_arch()}"
    line = native.describe(path, origin, refused)
    assert line == f"built on this machine ({path}); the packaged one is not used: {refused}"
    # With no compiler either, both reasons are given.
    monkeypatch.setenv(native.CACHE_ENV, str(cache.parent / "empty"))
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", str(cache.parent / "no-bin"))
    with pytest.raises(native.Unavailable, match=f"made for {other}.*; no C compiler"):
        native.locate()


def test_a_packaged_program_others_may_change_is_not_run(package: Path, cache: Path) -> None:
    _compile(_needs(native.compiler()), package)
    package.chmod(0o777)
    path, _origin, refused = native.locate()
    assert path != str(package) and "may be changed by other users" in refused
    package.chmod(0o755)
    package.parent.chmod(0o777)
    assert "may be changed by other users" in native.locate()[2]
    package.parent.chmod(0o755)
    assert native.locate()[0] == str(package)


@pytest.mark.parametrize("arch", ["native", "aarch64", "armv7l"])
def test_the_architecture_is_read_from_the_program(arch: str, tmp_path: Path) -> None:
    cc = native.compiler() if arch == "native" else CROSS[arch]
    program = _compile(_needs(cc), tmp_path / "agent")
    expected = native.this_arch() if arch == "native" else arch
    assert native.elf_arch(str(program)) == expected


def test_this_machine_is_the_interpreters() -> None:
    machine = platform.machine()
    if machine not in ("x86_64", "aarch64"):
        pytest.skip("checked on x86_64 and aarch64")
    assert native.this_arch() == machine == native.elf_arch(sys.executable)
    assert native.elf_arch(native.SOURCE) is None  # no ELF program


def test_the_agent_says_once_which_engine_runs(cache: Path, tmp_path: Path) -> None:
    _needs(native.compiler())
    spec = write_init_spec(tmp_path, port=9)  # nothing listens; the agent sends 1 datagram
    env = {**os.environ, native.CACHE_ENV: str(cache)}
    for engine, line in [
        ("auto", f"running the compiled agent built on this machine ({native.binary_path()})"),
        ("python", "running the Python agent (engine = python)"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "bramble", "agent", "--spec", str(spec), "--count", "1",
             "--engine", engine],
            capture_output=True, text=True, timeout=60, env=env, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert done.stderr.count(f"bramble agent: {line}\n") == 1, done.stderr
