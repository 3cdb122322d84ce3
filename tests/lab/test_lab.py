"""A real three-node lab, end to end: DHCP, DNS, NAT, NFS, telemetry, faults, teardown (root)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bramble_testing import Receiver, set_keys

from bramble.init import secrets_text
from bramble.lab import commands, netns
from bramble.spec import load_secrets

pytestmark = [pytest.mark.root, pytest.mark.slow]

if (missing := netns.missing_tool()) is not None:
    pytest.skip(f"lab tool missing: {missing}", allow_module_level=True)

INTERVAL = 0.25
DOWN_AFTER = 6  # intervals: down 1.5 s after the last datagram
SPEC = f"""
[telemetry]
interval = {INTERVAL}
stale_after = 2
down_after = {DOWN_AFTER}

[[nodes]]
name = "alpha"
mac = "02:b7:aa:00:00:01"
address = "10.42.0.21"

[[nodes]]
name = "beta"
mac = "02:b7:aa:00:00:02"
address = "10.42.0.22"

[[nodes]]
name = "gamma"
mac = "02:b7:aa:00:00:03"
address = "10.42.0.23"
"""


def bramble(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real CLI."""
    proc = subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"bramble {' '.join(args)}: {proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Running:
    prefix: str
    lab: commands.Lab
    up_done: float
    up_output: str

    def api(self, path: str) -> Any:
        return httpx.get(self.lab.url.rstrip("/") + path, timeout=5).json()

    def nodes(self) -> dict[str, dict[str, Any]]:
        return {n["name"]: n for n in self.api("/api/nodes")}

    def exec(self, node: str, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return bramble(
            "lab", "exec", node, "--prefix", self.prefix, "--", *argv, check=False, timeout=timeout
        )

    def wait(self, check: Any, timeout: float) -> float:
        """Seconds until CHECK() is true; AssertionError after TIMEOUT."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if check():
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"not true within {timeout} s: {self.nodes()}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    prefix = "t" + secrets.token_hex(3)
    directory = tmp_path_factory.mktemp("lab")
    (directory / "bramble.toml").write_text(SPEC)
    (directory / "bramble.secrets.toml").write_text(secrets_text())
    (directory / "bramble.secrets.toml").chmod(0o600)
    try:
        out = bramble(
            "lab",
            "up",
            "--spec",
            str(directory / "bramble.toml"),
            "--prefix",
            prefix,
            "--port",
            "0",
        )
        done = time.monotonic()
        yield Running(prefix, commands.load_lab(prefix), done, out.stdout)
    finally:
        down = bramble("lab", "down", "--prefix", prefix, check=False)
        assert down.returncode == 0, down.stdout + down.stderr
        assert commands.leftovers(prefix) == []


def test_every_node_is_up_on_the_api_within_5_s(lab: Running) -> None:
    names = {"alpha", "beta", "gamma"}

    def all_up() -> bool:
        nodes = lab.nodes()
        return names <= set(nodes) and all(nodes[n]["status"] == "up" for n in names)

    waited = lab.wait(all_up, 10)
    assert time.monotonic() - lab.up_done <= 5.0, f"all up {waited:.2f} s after polling began"
    assert "nfs-cat: ok" in lab.up_output
    # Each node runs the compiled agent, built once before the nodes started.
    assert "agents: compiled" in lab.up_output
    run = lab.lab.plan.state / "run"
    for name in names:
        pid = commands.daemons.running(run, f"{name}.agent")
        assert pid is not None
        assert Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] == b"bramble-agent"


def test_every_node_enrolls_at_up_and_signs_with_its_own_key(lab: Running) -> None:
    """No step per node: each enrolls from its DHCP lease (auto) and its agent signs with
    the key it made, bound to its name on the master."""
    assert "enrollment: 3/3 node(s) enrolled with their own keys" in lab.up_output
    state = lab.lab.plan.state
    for name in ("alpha", "beta", "gamma"):
        own = (state / "nodes" / name / "node.toml").read_text()
        assert f'name = "{name}"' in own and 'key_id = "n-' in own
        # over HTTPS (a board refuses anything else), the master's certificate checked
        join = tomllib.loads((state / "nodes" / name / "join.toml").read_text())["join"]
        assert join["master"] == f"https://{lab.lab.spec.network.master_address}:8081"
        assert (state / "nodes" / name / "tls" / "ca.pem").read_bytes() == (
            state / "tls" / "ca.pem"
        ).read_bytes()
    # with the shared key retired, only the nodes' own keys verify: they stay up
    token = load_secrets(lab.lab.spec_path).admin_token
    auth = {"Authorization": f"Bearer {token}"}
    retired = httpx.post(lab.lab.url + "api/trust/retire-shared-key", headers=auth, timeout=5)
    assert retired.status_code == 200, retired.text
    before = lab.nodes()
    lab.wait(lambda: all(lab.nodes()[n]["seq"] > before[n]["seq"] for n in before), 5)
    rejected = httpx.get(lab.lab.url + "api/stats", timeout=5).json()["rejected"]
    assert "unknown_key" not in rejected and "wrong_node" not in rejected


def test_up_again_leaves_a_healthy_lab_alone(lab: Running) -> None:
    run = lab.lab.plan.state / "run"
    before = {d: commands.daemons.read_pid(run, d) for d in ("master", "alpha.agent")}
    out = bramble("lab", "up", "--prefix", lab.prefix, "--spec", str(lab.lab.spec_path))
    assert "already up" in out.stdout
    assert {d: commands.daemons.read_pid(run, d) for d in before} == before


def test_each_node_gets_its_spec_address_and_hostname_by_dhcp(lab: Running) -> None:
    for node in lab.lab.spec.nodes:
        assert commands.node_address(lab.lab, node.name) == str(node.address)
        out = lab.exec(node.name, "hostname")
        assert out.stdout.strip() == node.name
        assert lab.nodes()[node.name]["address"] == str(node.address)


def test_a_node_resolves_another_through_the_masters_dns(lab: Running) -> None:
    out = lab.exec("alpha", "getent", "hosts", "gamma")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "10.42.0.23"
    fqdn = lab.exec("beta", "getent", "hosts", "alpha.cluster")
    assert fqdn.stdout.split()[0] == "10.42.0.21"


def test_a_node_reaches_the_root_namespace_through_nat(lab: Running) -> None:
    host = str(lab.lab.plan.uplink_host)
    listener = socket.create_server((host, 0))
    port = listener.getsockname()[1]
    seen: list[tuple[str, bytes]] = []

    def accept() -> None:
        listener.settimeout(15)
        conn, peer = listener.accept()
        with conn:
            seen.append((peer[0], conn.recv(100)))

    thread = threading.Thread(target=accept)
    thread.start()
    code = f"import socket; socket.create_connection(('{host}', {port}), 5).sendall(b'hello')"
    out = lab.exec("beta", sys.executable, "-c", code)
    thread.join(20)
    listener.close()
    assert out.returncode == 0, out.stderr
    # Masqueraded: the root namespace sees the master's uplink address, not the node's.
    assert seen == [(str(lab.lab.plan.uplink_master), b"hello")]


def _reaches_listener(host: str, port: int) -> bool:
    """Whether HOST:PORT answers with the test listener's b'x'."""
    try:
        with socket.create_connection((host, port), 1.5) as conn:
            conn.settimeout(1.5)
            return conn.recv(1) == b"x"
    except OSError:
        return False


def test_nothing_in_the_root_namespace_reaches_a_node_unasked(lab: Running) -> None:
    port = 20000 + secrets.randbelow(40000)
    code = (
        f"import socket; s=socket.create_server(('0.0.0.0', {port}))\n"
        "while True:\n    c, _ = s.accept(); c.sendall(b'x'); c.close()"
    )
    holder = commands.daemons.running(lab.lab.plan.state / "run", "gamma.init")
    assert holder is not None
    server = subprocess.Popen(commands.daemons.in_node(holder, [sys.executable, "-c", code]))
    plan = lab.lab.plan
    probe = (
        "import socket, time\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        print(socket.create_connection(('10.42.0.23', {port}), 5).recv(1)); break\n"
        "    except ConnectionRefusedError:\n"
        "        time.sleep(0.1)\n"
    )
    route = ["ip", "route", "add", "10.42.0.23/32", "via", str(plan.uplink_master)]
    try:
        # The listener is real: the master, on the cluster LAN, reaches it.
        reach = netns.run(["ip", "netns", "exec", plan.master_ns, sys.executable, "-c", probe])
        assert "b'x'" in reach
        # The host has no route to the cluster (its default route leads elsewhere) ...
        assert not _reaches_listener("10.42.0.23", port)
        # ... and even with one through the uplink, the master's forward chain drops it.
        subprocess.run([*route, "dev", plan.uplink_root], check=True)
        with pytest.raises(OSError):
            socket.create_connection(("10.42.0.23", port), 1.5).close()
    finally:
        subprocess.run(["ip", "route", "del", "10.42.0.23/32"], check=False, capture_output=True)
        server.kill()
        server.wait()


def test_a_node_reads_the_nfs_export_with_nfs_cat(lab: Running) -> None:
    export = commands.topology.export_dir(lab.lab.plan.state, "/srv/jobs")
    (export / "hello.txt").write_text("from the master\n")
    out = lab.exec("gamma", "nfs-cat", "nfs://10.42.0.1/srv/jobs/hello.txt?version=4")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "from the master\n"
    # The same directory at /mnt/jobs in the node's own mount namespace.
    assert lab.exec("alpha", "cat", "/mnt/jobs/hello.txt").stdout == "from the master\n"
    status = bramble("lab", "status", "--prefix", lab.prefix).stdout
    assert status.count("nfs-cat ok") == 3


def test_the_supervisor_restarts_a_daemon_that_dies(lab: Running) -> None:
    run = lab.lab.plan.state / "run"
    boot = lab.nodes()["alpha"]["boot"]
    old = {d: commands.daemons.running(run, d) for d in ("dnsmasq", "alpha.agent")}
    for pid in old.values():
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        now = {d: commands.daemons.running(run, d) for d in old}
        return all(now[d] is not None and now[d] != old[d] for d in old)

    lab.wait(restarted, 10)
    lab.wait(lambda: lab.nodes()["alpha"]["status"] == "up", 5)
    assert lab.nodes()["alpha"]["boot"] == boot  # a crashed agent is not a reboot
    assert "restarted" in (run / "supervisor.log").read_text()


_PEER_SERIAL = """
import socket, ssl, sys
from cryptography import x509
tls, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
context = ssl.create_default_context(cafile=tls + "/ca.pem")
context.check_hostname = False
context.load_cert_chain(tls + "/worker.pem", tls + "/worker-key.pem")
with socket.create_connection((host, port), 5) as raw, context.wrap_socket(raw) as conn:
    print(format(x509.load_der_x509_certificate(conn.getpeercert(True)).serial_number, "X"))
"""


def _serial(pem: bytes) -> str:
    from cryptography import x509

    return format(x509.load_pem_x509_certificate(pem).serial_number, "X")


def _worker_address(lab: Running, node: str) -> str | None:
    """The Dask address (tls://host:port) of NODE's worker, as the scheduler has it."""
    workers = lab.api("/api/jobs/cluster")["workers"]
    return next((w["address"] for w in workers if w["name"] == node), None)


def test_keys_rotate_nodes_makes_a_node_rotate_and_no_heartbeat_is_lost(lab: Running) -> None:
    """`keys rotate --nodes` marks alpha due; its check (what bramble-rotate.timer runs, here
    run at once with `lab exec`) rotates its key and worker certificate; its agent and worker
    restart on them (as `systemctl restart` does on a board). Its heartbeats are accepted
    throughout, the new key id is the one enrolled, the worker presents the new certificate,
    and the old certificate's serial is revoked once the overlap ends."""
    from bramble.trust.node import read_identity

    state = lab.lab.plan.state
    node_dir = state / "nodes" / "alpha"
    spec, url = str(lab.lab.spec_path), lab.lab.url
    old = read_identity(node_dir / "node.toml")
    assert old is not None
    old_serial = _serial((node_dir / "tls" / "worker.pem").read_bytes())
    lab.wait(lambda: _worker_address(lab, "alpha") is not None, 30)
    old_worker = _worker_address(lab, "alpha")
    bad = ("bad_signature", "unknown_key", "wrong_node", "revoked")
    rejected = lab.api("/api/stats")["rejected"]
    t0 = time.time()
    check = [
        sys.executable, "-m", "bramble", "enroll", "--spec", str(node_dir / "bramble.toml"),
        "--mac", lab.lab.plan.node("alpha").mac, "--if-due",
    ]  # fmt: skip
    out = lab.exec("alpha", *check)
    assert out.returncode == 0 and "not due" in out.stdout, out.stdout + out.stderr

    marked = bramble("keys", "rotate", "--nodes", "--node", "alpha", "--spec", spec, "--url", url)
    assert "keys due for rotation: alpha" in marked.stdout
    out = lab.exec("alpha", *check)
    assert out.returncode == 0 and "rotated" in out.stdout, out.stdout + out.stderr
    new = read_identity(node_dir / "node.toml")
    assert new is not None and new.name == "alpha" and new.key_id != old.key_id
    new_serial = _serial((node_dir / "tls" / "worker.pem").read_bytes())
    assert new_serial != old_serial
    assert "not due" in lab.exec("alpha", *check).stdout  # once

    run = state / "run"
    pids = {d: commands.daemons.running(run, d) for d in ("alpha.agent", "alpha.worker")}
    for pid in pids.values():
        assert pid is not None
        os.kill(pid, signal.SIGTERM)  # the supervisor starts them again, on the new files
    lab.wait(lambda: all(commands.daemons.running(run, d) not in (None, pids[d]) for d in pids), 10)
    lab.wait(lambda: _worker_address(lab, "alpha") not in (None, old_worker), 30)
    address = _worker_address(lab, "alpha")
    assert address is not None
    host, port = address.removeprefix("tls://").rsplit(":", 1)
    probe = lab.exec("alpha", sys.executable, "-c", _PEER_SERIAL, str(node_dir / "tls"), host, port)
    assert probe.stdout.strip() == new_serial, probe.stdout + probe.stderr

    enrolled = subprocess.run(
        [sys.executable, "-m", "bramble", "nodes", "enrolled", "--spec", spec, "--url", url],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=True,
    ).stdout
    assert new.key_id in enrolled and old.key_id not in enrolled
    # the overlap ends (ten intervals, at least 30 s): the old certificate is revoked and
    # the old key dropped; alpha's heartbeats, signed with the new key, still count
    revoked = Path(lab.lab.spec.history.path).with_name("revoked-certs.txt")
    lab.wait(lambda: old_serial in revoked.read_text().split(), 45)
    seq = lab.nodes()["alpha"]["seq"]
    lab.wait(lambda: lab.nodes()["alpha"]["seq"] > seq + 4, 5)
    assert lab.nodes()["alpha"]["status"] == "up"
    assert not _events(lab, "alpha", "down", t0)
    after = lab.api("/api/stats")["rejected"]
    assert {r: after.get(r, 0) for r in bad} == {r: rejected.get(r, 0) for r in bad}
    assert new_serial not in revoked.read_text().split()


def _events(lab: Running, node: str, kind: str, since: float) -> list[dict[str, Any]]:
    return [
        c
        for c in lab.api("/api/changes?limit=500")
        if c["node"] == node and c["kind"] == kind and c["ts"] >= since
    ]


def test_stop_then_start_is_down_then_up_with_a_reboot(lab: Running) -> None:
    before = lab.nodes()["gamma"]["boot"]
    t0 = time.time()
    bramble("lab", "stop", "gamma", "--prefix", lab.prefix)
    threshold = INTERVAL * DOWN_AFTER
    waited = lab.wait(lambda: lab.nodes()["gamma"]["status"] == "down", threshold + 3)
    assert waited <= threshold + 2.0
    assert lab.exec("gamma", "hostname").stdout.strip() == "localhost"
    t1 = time.time()
    bramble("lab", "start", "gamma", "--prefix", lab.prefix)
    lab.wait(lambda: lab.nodes()["gamma"]["status"] == "up", 5)
    assert lab.nodes()["gamma"]["boot"] > before
    lab.wait(lambda: _events(lab, "gamma", "rebooted", t1), 3)
    assert _events(lab, "gamma", "down", t0)


def test_cut_then_heal_is_down_then_up_without_a_reboot(lab: Running) -> None:
    before = lab.nodes()["beta"]["boot"]
    t0 = time.time()
    bramble("lab", "cut", "beta", "--prefix", lab.prefix)
    lab.wait(lambda: lab.nodes()["beta"]["status"] == "down", INTERVAL * DOWN_AFTER + 3)
    assert "cable cut" in bramble("lab", "status", "--prefix", lab.prefix).stdout
    bramble("lab", "heal", "beta", "--prefix", lab.prefix)
    lab.wait(lambda: lab.nodes()["beta"]["status"] == "up", 5)
    assert lab.nodes()["beta"]["boot"] == before
    assert not _events(lab, "beta", "rebooted", t0)


def test_master_restart_keeps_history_and_nodes_come_back(lab: Running) -> None:
    time.sleep(1.5)  # let the history writer flush some samples
    started = lab.api("/api/stats")["started"]
    before = lab.api("/api/nodes/alpha/history?metric=cpuusage&since=-3600&step=1")["points"]
    assert before
    bramble("lab", "stop", "master", "--prefix", lab.prefix)
    with pytest.raises(httpx.HTTPError):
        lab.api("/api/nodes")
    bramble("lab", "start", "master", "--prefix", lab.prefix)
    names = {"alpha", "beta", "gamma"}
    lab.wait(
        lambda: (
            all(n["status"] == "up" for n in lab.nodes().values()) and set(lab.nodes()) >= names
        ),
        15,
    )
    assert lab.api("/api/stats")["started"] > started
    after = lab.api("/api/nodes/alpha/history?metric=cpuusage&since=-3600&step=1")["points"]
    assert after and after[0][0] <= before[0][0] + 1.0


def test_a_board_plugged_in_enrolls_or_waits_for_approval(lab: Running) -> None:
    """`lab add`: a board of the spec enrolls on its own and is up; a stranger waits in
    `nodes pending` until approved, then boots."""
    out = bramble("lab", "add", "--prefix", lab.prefix)
    assert "node-4" in out.stdout and "its own key" in out.stdout, out.stdout
    lab.wait(lambda: lab.nodes().get("node-4", {}).get("status") == "up", 10)
    mac = "02:00:00:00:aa:01"
    out = bramble("lab", "add", "stray", "--mac", mac, "--prefix", lab.prefix)
    assert "waits for approval" in out.stdout, out.stdout
    spec = str(commands.load_lab(lab.prefix).spec_path)
    assert mac in bramble("nodes", "pending", "--spec", spec, "--url", lab.lab.url).stdout
    assert "stray" not in lab.nodes()
    bramble("nodes", "approve", mac, "--name", "stray", "--spec", spec, "--url", lab.lab.url)
    bramble("lab", "start", "stray", "--prefix", lab.prefix)
    lab.wait(lambda: lab.nodes().get("stray", {}).get("status") == "up", 10)


def _alert(lab: Running, rule: str, node: str, state: str) -> bool:
    return any(
        a["rule"] == rule and a["node"] == node and a["state"] == state
        for a in lab.api("/api/alerts")
    )


def _told(receiver: Receiver, rule: str) -> list[str]:
    """The status of each notification RECEIVER got about RULE, in order."""
    return [b["status"] for b in receiver.bodies if b["groupLabels"] == {"alertname": rule}]


def test_a_board_that_throttles_or_powers_off_fires_alerts_told_once_and_shown(
    lab: Running,
) -> None:
    """From the firmware's flags through the agent to alerts: a weak supply fires
    `undervoltage` at once and `throttled` after its `for`, a webhook (a real HTTP server
    outside the lab, reached through the master's uplink) is told once per rule, the
    dashboard shows the banner; clearing resolves them; a board powered off fires
    `node_down`, powered on resolves it."""
    from playwright.sync_api import sync_playwright

    receiver = Receiver(str(lab.lab.plan.uplink_host))
    spec_path = lab.lab.spec_path
    original = spec_path.read_text()

    def restart_master() -> None:
        bramble("lab", "stop", "master", "--prefix", lab.prefix)
        bramble("lab", "start", "master", "--prefix", lab.prefix)
        lab.wait(lambda: all(lab.nodes()[n]["status"] == "up" for n in ("alpha", "beta")), 15)

    spec_path.write_text(
        set_keys(
            original + '\n[[alerts]]\nname = "throttled"\nfor = "1s"\n',
            "alerting",
            f'webhooks = ["{receiver.url}"]\ngroup_wait = "0.2s"\ngroup_interval = "0.5s"',
        )
    )
    try:
        restart_master()
        assert lab.nodes()["alpha"]["metrics"].get("undervoltage") == 0  # a Pi's flags, clear
        out = bramble("lab", "throttle", "alpha", "--undervoltage", "--prefix", lab.prefix)
        assert "under-voltage, throttled" in out.stdout, out.stdout
        lab.wait(lambda: _alert(lab, "undervoltage", "alpha", "firing"), 5)
        lab.wait(lambda: _alert(lab, "throttled", "alpha", "firing"), 5)
        lab.wait(lambda: _told(receiver, "undervoltage") and _told(receiver, "throttled"), 5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"], headless=True
            )
            page = browser.new_page()
            page.goto(lab.lab.url)
            banner = page.locator("#alerts")
            banner.wait_for(state="visible", timeout=10_000)
            assert "undervoltage" in banner.inner_text()
            browser.close()
        time.sleep(1.2)  # two more group intervals with the same alerts firing: told once
        assert _told(receiver, "undervoltage") == ["firing"]
        assert _told(receiver, "throttled") == ["firing"]
        (payload,) = [b for b in receiver.bodies if b["groupLabels"]["alertname"] == "undervoltage"]
        (alert,) = payload["alerts"]
        assert alert["labels"] == {
            "alertname": "undervoltage", "node": "alpha", "severity": "critical"
        }  # fmt: skip

        bramble("lab", "throttle", "alpha", "--clear", "--prefix", lab.prefix)
        lab.wait(lambda: _alert(lab, "undervoltage", "alpha", "resolved"), 5)
        lab.wait(lambda: _told(receiver, "undervoltage") == ["firing", "resolved"], 5)
        assert lab.nodes()["alpha"]["metrics"]["undervoltage_since_boot"] == 1

        bramble("lab", "stop", "beta", "--prefix", lab.prefix)
        lab.wait(lambda: _alert(lab, "node_down", "beta", "firing"), INTERVAL * DOWN_AFTER + 5)
        lab.wait(lambda: _told(receiver, "node_down") == ["firing"], 5)
        bramble("lab", "start", "beta", "--prefix", lab.prefix)
        lab.wait(lambda: _alert(lab, "node_down", "beta", "resolved"), 10)
        lab.wait(lambda: _told(receiver, "node_down") == ["firing", "resolved"], 5)
    finally:  # the lab's last test: its master keeps the webhook until `lab down`
        receiver.close()
        spec_path.write_text(original)


def test_down_after_a_killed_up_leaves_nothing(tmp_path: Path) -> None:
    prefix = "k" + secrets.token_hex(3)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bramble",
            "lab",
            "up",
            "--nodes",
            "3",
            "--prefix",
            prefix,
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("nodes:"):  # half-way: network and master up, nodes booting
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert any(ns.startswith(f"brl-{prefix}-") for ns in netns.namespaces())
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        down = bramble("lab", "down", "--prefix", prefix, check=False)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "nothing left" in down.stdout
    assert commands.leftovers(prefix) == []
    assert not any(ns.startswith(f"brl-{prefix}-") for ns in netns.namespaces())
