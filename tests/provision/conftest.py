"""Fixtures for the provisioning tests: specs on disk, fixed secrets, network namespaces."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bramble.spec import Secrets, Spec, load_spec

HERE = Path(__file__).parent
SPECS = HERE / "specs"
GOLDEN = HERE / "golden"
EXAMPLES = HERE.parents[1] / "examples"

SECRETS = Secrets(
    telemetry_key_id="k1",
    telemetry_key=bytes(range(32)),
    admin_token="golden-admin-token-not-secret-0123456789",
)
SECRETS_TEXT = (
    '[telemetry]\nkey_id = "k1"\nkey = "' + bytes(range(32)).hex() + '"\n'
    '\n[admin]\ntoken = "golden-admin-token-not-secret-0123456789"\n'
)


def spec_files() -> list[Path]:
    """Our own specs, then the example specs (if the examples directory has any)."""
    return sorted(SPECS.glob("*.toml")) + sorted(EXAMPLES.glob("*.toml"))


@pytest.fixture(params=spec_files(), ids=lambda p: p.stem)
def spec_path(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


@pytest.fixture
def spec(spec_path: Path) -> Spec:
    return load_spec(spec_path)


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    """A spec directory like `bramble init` makes: the small spec and its secrets (0600)."""
    directory = tmp_path / "conf"
    directory.mkdir()
    shutil.copy(SPECS / "small.toml", directory / "bramble.toml")
    secrets = directory / "bramble.secrets.toml"
    secrets.write_text(SECRETS_TEXT)
    secrets.chmod(0o600)
    return directory


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2 (ip)")


@pytest.fixture
def netns() -> Iterator[Callable[[], str]]:
    """Make uniquely named network namespaces; all are removed at teardown, even on failure."""
    need_root()
    made: list[str] = []

    def make() -> str:
        name = f"brprov-{uuid.uuid4().hex[:8]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        return name

    yield make
    for name in made:
        pids = subprocess.run(
            ["ip", "netns", "pids", name], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in pids:
            subprocess.run(["kill", "-9", pid], check=False)
        subprocess.run(["ip", "netns", "del", name], check=False)
