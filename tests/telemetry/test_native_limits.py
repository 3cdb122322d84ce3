"""The spec and the compiled agent agree on limits: a spec at every limit runs the compiled
agent, and a spec one past it is refused by `bramble check`, never by an agent that exits
and is restarted forever."""

from __future__ import annotations

import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest
from bramble_testing import random_port, receiver, write_init_spec

from bramble.spec import MAX_HOST, MAX_INTERVAL, MAX_TELEMETRY_KEY, MAX_UNICAST
from bramble.telemetry import native
from bramble.telemetry.decode import decode


def _cluster(
    directory: Path, port: int, *, unicast: list[str], interval: float, key: bytes
) -> Path:
    """A loopback spec with these unicast targets, interval and telemetry key."""
    spec = write_init_spec(directory, port=port, interval=interval)
    targets = ", ".join(f'"{target}"' for target in unicast)
    spec.write_text(spec.read_text().replace("unicast = []", f"unicast = [{targets}]", 1))
    secrets = directory / "bramble.secrets.toml"
    secrets.write_text(
        f'[telemetry]\nkey_id = "k1"\nkey = "{key.hex()}"\n\n'
        '[admin]\ntoken = "test-admin-token-0123456789"\n'
    )
    return spec


def _bramble(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(native.compiler() is None, reason="needs a C compiler (cc)")
def test_a_spec_at_every_limit_runs_the_compiled_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(native.CACHE_ENV, str(tmp_path / "cache"))
    port = random_port()
    key = bytes(range(256)) * (MAX_TELEMETRY_KEY // 256)
    node = "𝄞" * 63  # the longest name the agent takes: 63 characters, 252 bytes
    with ExitStack() as stack:
        group = stack.enter_context(receiver(port))
        unicast = []
        for _ in range(MAX_UNICAST):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(10)
            unicast.append(sock)
        targets = [f"127.0.0.1:{sock.getsockname()[1]}" for sock in unicast]
        spec = _cluster(tmp_path, port, unicast=targets, interval=MAX_INTERVAL, key=key)
        assert _bramble("check", str(spec)).returncode == 0
        run = _bramble("agent", "--spec", str(spec), "--engine", "compiled", "--count", "1",
                       "--node-name", node)  # fmt: skip
        assert run.returncode == 0, run.stderr
        datagrams = [sock.recvfrom(2048)[0] for sock in [group, *unicast]]
    for data in datagrams:
        packet = decode(data, {"k1": key}, allow_unsigned=False, source="x")
        assert packet.node == node and packet.interval == MAX_INTERVAL


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        (
            {"unicast": [f"127.0.0.1:{20000 + i}" for i in range(MAX_UNICAST + 1)]},
            "bramble.toml:50: telemetry.unicast:",
            f"at most {MAX_UNICAST} targets",
        ),
        (
            {"unicast": ["h" * (MAX_HOST + 1)]},
            "bramble.toml:50: telemetry.unicast:",
            f"a host name or IPv4 address of at most {MAX_HOST} characters",
        ),
        (
            {"interval": MAX_INTERVAL + 1},
            "bramble.toml:49: telemetry.interval:",
            f"at most {MAX_INTERVAL} seconds",
        ),
        (
            {"key": bytes(MAX_TELEMETRY_KEY + 1)},
            "bramble.secrets.toml: telemetry.key:",
            f"must be 32 to {2 * MAX_TELEMETRY_KEY} hex digits",
        ),
    ],
)
def test_a_spec_one_past_a_limit_is_refused_by_check(
    tmp_path: Path, change: dict[str, object], where: str, message: str
) -> None:
    settings: dict[str, object] = {"unicast": [], "interval": 1.0, "key": bytes(32)}
    spec = _cluster(tmp_path, random_port(), **{**settings, **change})  # type: ignore[arg-type]
    run = _bramble("check", str(spec))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert f"{tmp_path}/{where}" in run.stderr and message in run.stderr, run.stderr
