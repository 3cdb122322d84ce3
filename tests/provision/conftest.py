"""Fixtures for the provisioning tests: specs on disk, fixed secrets, network namespaces."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bramble_testing import SECRETS_TEXT, SPECS, spec_files

from bramble.spec import Spec, load_spec


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


@pytest.fixture
def netns() -> Iterator[Callable[[], str]]:
    """Make uniquely named network namespaces; all are removed at teardown, even on failure.

    Only for tests marked `root` (the root conftest skips them where they cannot run).
    """
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
