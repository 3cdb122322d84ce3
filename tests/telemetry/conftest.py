"""Shared fixtures for the telemetry tests: captured /proc text and a spec on disk."""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
KEY = bytes.fromhex("5f" * 32)


def fixture_text(machine: str, name: str) -> str:
    """A captured file of MACHINE ('x86_64' or 'raspberrypi')."""
    return (FIXTURES / machine / name).read_text()


def fixture_bytes(machine: str, name: str) -> bytes:
    """A captured file of MACHINE, as the sampler reads it."""
    return (FIXTURES / machine / name).read_bytes()


def proc_tree(machine: str, root: Path) -> Path:
    """A /proc-like directory holding MACHINE's captured files, for the Sampler."""
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    for name in ("stat", "meminfo", "loadavg", "uptime"):
        shutil.copy(FIXTURES / machine / name, proc / name)
    shutil.copy(FIXTURES / machine / "net_dev", proc / "net" / "dev")
    return proc


def random_port() -> int:
    """A telemetry port unlikely to collide with other tests running on this machine."""
    return random.randint(20000, 60000)


def write_spec(directory: Path, *, port: int, interval: float = 0.05) -> Path:
    """A spec (from `bramble init`'s template) sending on loopback to PORT, and its secrets."""
    from bramble.init import spec_text

    text = spec_text()
    text = re.sub(r"(?m)^port = 6000\b", f"port = {port}", text, count=1)
    text = re.sub(r'(?m)^interface = ""', 'interface = "127.0.0.1"', text, count=1)
    text = re.sub(r"(?m)^interval = 1\.0\b", f"interval = {interval}", text, count=1)
    spec = directory / "bramble.toml"
    spec.write_text(text)
    secrets = directory / "bramble.secrets.toml"
    fd = os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(
            f'[telemetry]\nkey_id = "k1"\nkey = "{KEY.hex()}"\n\n'
            '[admin]\ntoken = "test-admin-token-0123456789"\n'
        )
    return spec


@pytest.fixture
def spec_dir(tmp_path: Path) -> tuple[Path, int]:
    """A spec file on a random loopback telemetry port; returns (spec path, port)."""
    port = random_port()
    return write_spec(tmp_path, port=port), port
