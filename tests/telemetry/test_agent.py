"""The real `bramble agent` on loopback multicast: datagrams, signatures, SIGTERM, errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bramble_testing import GROUP, KEY, finish, random_port, receiver

from bramble.spec import TelemetrySpec
from bramble.telemetry.agent import PROCS_EVERY, AgentConfig, _Outage, open_socket
from bramble.telemetry.decode import decode, decode_datagram
from bramble.telemetry.wire import Packet, ProcsPacket

ENGINES = pytest.mark.parametrize("engine", ["compiled", "python"])


def _agent(spec: Path, *args: str, engine: str = "auto") -> subprocess.Popen[bytes]:
    bramble = Path(sys.executable).parent / "bramble"
    command = [str(bramble)] if bramble.exists() else [sys.executable, "-m", "bramble"]
    return subprocess.Popen(
        [*command, "agent", "--spec", str(spec), "--engine", engine, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@ENGINES
def test_agent_sends_signed_datagrams_then_exits_on_count(
    spec_dir: tuple[Path, int], engine: str
) -> None:
    spec, port = spec_dir
    with receiver(port) as rx:
        agent = _agent(
            spec, "--node-name", "node-7", "--count", "5", "--boot-id", "42", engine=engine
        )
        packets = []
        try:
            for _ in range(5):
                data, _address = rx.recvfrom(2048)
                packets.append(decode(data, {"k1": KEY}, allow_unsigned=False, source="x"))
            assert agent.wait(timeout=20) == 0
        finally:
            finish(agent)
    # seq counts up by one; it starts high (ms since boot) so a restarted agent stays newer.
    first = packets[0].seq
    assert [p.seq for p in packets] == [first, first + 1, first + 2, first + 3, first + 4]
    for packet in packets:
        assert packet.signed and packet.key_id == "k1"
        assert packet.node == "node-7"
        assert packet.boot == 42
        assert packet.interval == 0.05
        assert abs(packet.ts - time.time()) < 30
        assert packet.sample.meminfo["MemTotal"] > 0
        assert 0 <= packet.sample.cpuusage <= 1
        assert len(packet.sample.cores) == os.cpu_count()
    # A monotonic schedule: five samples 0.05 s apart take about 0.2 s, not much more.
    assert packets[-1].ts - packets[0].ts == pytest.approx(0.2, abs=0.15)


@ENGINES
def test_count_says_what_was_sent_once_at_the_end(spec_dir: tuple[Path, int], engine: str) -> None:
    spec, port = spec_dir
    with receiver(port):
        agent = _agent(spec, "--node-name", "node-7", "--count", "3", engine=engine)
        out, err = agent.communicate(timeout=20)
    assert agent.returncode == 0, err
    assert out.decode() == f"bramble agent: sent 3 datagrams as node-7 to {GROUP}:{port}\n"
    # and on stderr only the one line saying which agent runs
    said = err.decode().splitlines()
    assert len(said) == 1 and said[0].startswith("bramble agent: running the "), said


def test_process_datagrams_every_30_intervals_by_default() -> None:
    # Every process's stat read every 10 intervals was most of the agent's CPU time
    # (bench/RESULTS.md, Agent): the default is one process datagram every 30.
    assert TelemetrySpec().procs_every == 30 == PROCS_EVERY


@ENGINES
@pytest.mark.parametrize(
    ("setting", "option", "every"),
    [(None, "2", 2), ("3", None, 3), ("3", "0", 0), (None, None, 10)],
)
def test_process_datagrams_every_n_intervals_from_the_spec_or_the_option(
    spec_dir: tuple[Path, int], engine: str, setting: str | None, option: str | None, every: int
) -> None:
    spec, port = spec_dir
    if setting is not None:
        text = spec.read_text().replace("[telemetry]\n", f"[telemetry]\nprocs_every = {setting}\n")
        assert f"procs_every = {setting}" in text
        spec.write_text(text)
    args = ["--procs-every", option] if option is not None else []
    count = 7
    expected = count + ((count - 1) // every if every else 0)
    with receiver(port) as rx:
        agent = _agent(spec, "--node-name", "node-7", "--count", str(count), *args, engine=engine)
        try:
            packets = [
                decode_datagram(rx.recvfrom(2048)[0], {"k1": KEY}, allow_unsigned=False, source="x")
                for _ in range(expected)
            ]
            out, err = agent.communicate(timeout=20)
        finally:
            finish(agent)
    assert agent.returncode == 0, err
    assert out.decode() == f"bramble agent: sent {expected} datagrams as node-7 to {GROUP}:{port}\n"
    kinds = ["procs" if type(p) is ProcsPacket else "sample" for p in packets]
    # a process datagram after the sample of every Nth interval, from the second reading on
    want = []
    for i in range(count):
        want += ["sample"] + (["procs"] if every and i and i % every == 0 else [])
    assert kinds == want
    first = packets[0].seq
    assert [p.seq for p in packets] == list(range(first, first + expected))
    for packet in packets:
        if type(packet) is ProcsPacket:
            assert packet.node == "node-7" and 0 < len(packet.procs) <= 10
            assert any(p.rss > 0 for p in packet.procs)
        else:
            assert type(packet) is Packet


@ENGINES
def test_lean_process_is_small_and_exits_0_on_sigterm(
    spec_dir: tuple[Path, int], engine: str
) -> None:
    spec, port = spec_dir
    with receiver(port) as rx:
        agent = _agent(spec, engine=engine)
        try:
            rx.recvfrom(2048)
            status = Path(f"/proc/{agent.pid}/status").read_text()
            cmdline = Path(f"/proc/{agent.pid}/cmdline").read_bytes().split(b"\0")
            rss_kib = int(status.split("VmRSS:")[1].split()[0])
            start = time.monotonic()
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=10)
            stopped_in = time.monotonic() - start
        finally:
            finish(agent)
    assert code == 0
    assert stopped_in < 2
    # The exec'd process (the compiled agent, or a lean interpreter without pydantic or
    # typer), and the key is not on its command line.
    assert KEY.hex().encode() not in b" ".join(cmdline)
    if engine == "compiled":
        assert cmdline[0] == b"bramble-agent"
        assert rss_kib < 8 * 1024, f"compiled agent uses {rss_kib} KiB"
    else:
        assert b"-S" in cmdline
        assert rss_kib < 40 * 1024, f"lean agent uses {rss_kib} KiB"


@ENGINES
def test_sigterm_is_prompt_with_a_long_interval(spec_dir: tuple[Path, int], engine: str) -> None:
    spec, port = spec_dir
    with receiver(port) as rx:
        agent = _agent(spec, "--interval", "30", engine=engine)
        try:
            rx.recvfrom(2048)
            start = time.monotonic()
            agent.send_signal(signal.SIGINT)
            code = agent.wait(timeout=10)
        finally:
            finish(agent)
    assert code == 0
    assert time.monotonic() - start < 2


def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    spec = tmp_path / "bramble.toml"
    spec.write_text("[telemetry]\ninterval = -1\n")
    agent = _agent(spec, "--count", "1")
    _out, err = agent.communicate(timeout=60)
    assert agent.returncode == 2
    assert b"interval" in err
    assert b"Traceback" not in err


def test_too_long_node_name_fails_before_sending(spec_dir: tuple[Path, int]) -> None:
    spec, _port = spec_dir
    agent = _agent(spec, "--node-name", "n" * 100, "--count", "1")
    _out, err = agent.communicate(timeout=60)
    assert agent.returncode == 2
    assert b"node name" in err


@ENGINES
def test_failing_target_is_logged_once_and_the_others_still_get_datagrams(
    tmp_path: Path, engine: str
) -> None:
    # A lean agent run directly: its group send works, the unicast target (port 0) is refused
    # by the kernel on every send, without a packet leaving the machine.
    secrets = tmp_path / "bramble.secrets.toml"
    secrets.write_text(f'[telemetry]\nkey_id = "k1"\nkey = "{KEY.hex()}"\n')
    port = random_port()
    with receiver(port) as rx:
        agent = subprocess.run(
            [sys.executable, "-S", "-m", "bramble.telemetry.agent", "--node", "n1",
             "--group", GROUP, "--port", str(port), "--interval", "0.02",
             "--interface", "127.0.0.1", "--secrets", str(secrets),
             "--unicast", "127.0.0.1:0", "--count", "10", "--engine", engine],
            capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": _src()},
        )  # fmt: skip
        received = [rx.recvfrom(2048)[0] for _ in range(10)]
    assert agent.returncode == 0, agent.stderr
    assert agent.stderr.count(b"cannot send to 127.0.0.1:0") == 1, agent.stderr
    assert all(decode(d, {"k1": KEY}, allow_unsigned=False, source="x").signed for d in received)


def _src() -> str:
    import bramble

    return str(Path(bramble.__file__).parent.parent)


def test_outage_is_reported_once_and_recovery_once(capfd: pytest.CaptureFixture[str]) -> None:
    outage = _Outage(("10.0.0.1", 6000))
    for t in range(100):
        outage.failure(float(t), OSError(101, "Network is unreachable"))
    outage.success(100.0)
    outage.success(101.0)
    err = capfd.readouterr().err
    assert err.count("cannot send to 10.0.0.1:6000") == 1
    assert err.count("sending to 10.0.0.1:6000 again after 100.0 s (100 sends failed)") == 1


def test_socket_options_follow_the_spec() -> None:
    sock = open_socket(AgentConfig("n", GROUP, 6000, 1.0, interface="127.0.0.1", ttl=3))
    try:
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL) == 3
        assert sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP) == 1
        assert socket.inet_ntoa(sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)) == (
            "127.0.0.1"
        )
    finally:
        sock.close()
