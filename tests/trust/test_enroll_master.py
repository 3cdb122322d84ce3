"""Enrollment against a real `bramble master`: a board enrolls over HTTPS with the join token,
checking the master's certificate against the cluster CA, signs its heartbeats with its own
key; a forgery in another node's name and a revoked node's heartbeats are refused and counted;
the admin's commands list, approve and revoke; plain HTTP enrollment is refused, and a master
the board's CA did not sign is never told the key."""

from __future__ import annotations

import secrets
import shutil
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, sample_body, set_keys, wait_for

from bramble.telemetry.encode import sign

MAC = "02:b7:00:00:00:01"


def _enroll(master: Master, key: bytes, mac: str = MAC, token: str | None = None) -> httpx.Response:
    """Ask as a board does: over HTTPS, the master's certificate checked against the CA."""
    body = {"mac": mac, "key": key.hex(), "nonce": secrets.token_urlsafe(16)}
    auth = {"Authorization": f"Bearer {token or master.secrets.join_token}"}
    verify = ssl.create_default_context(cafile=str(master.ca_file))
    url = master.enroll_base + "/api/enroll"
    return httpx.post(url, json=body, headers=auth, timeout=10, verify=verify)


def _join_file(board: Path, master: Master, url: str | None = None) -> None:
    """The node image's join file and CA certificate in BOARD, for MASTER."""
    board.mkdir(exist_ok=True)
    (board / "join.toml").write_text(
        f'[join]\nmaster = "{url or master.enroll_base}"\ntoken = "{master.secrets.join_token}"\n'
    )
    (board / "tls").mkdir(exist_ok=True)
    shutil.copy(master.ca_file, board / "tls" / "ca.pem")


def _heartbeat(master: Master, node: str, seq: int, key: bytes, key_id: str) -> None:
    import json

    data = json.dumps(sample_body(node, seq), separators=(",", ":")).encode()
    master.send(sign(data, key, key_id))


def _bramble(master: Master, *args: str) -> str:
    return _bramble_at(str(master.spec_path), *args)


def _bramble_at(spec: str, *args: str) -> str:
    from typer.testing import CliRunner

    from bramble.cli import app

    run = CliRunner().invoke(app, [*args, "--spec", spec], env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    return run.output


def test_enroll_sign_forge_revoke(start_master: Callable[..., Master], tmp_path: Path) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(f"0 {MAC} 127.0.0.1 node-1 *\n0 02:b7:00:00:00:02 127.0.0.1 node-2 *\n")
    master = start_master(nodes=2, tls=True, tables={"enroll": f'lease_file = "{leases}"'})
    key = bytes.fromhex(secrets.token_hex(32))
    assert _enroll(master, key, token="not-the-join-token").status_code == 403
    answer = _enroll(master, key)
    assert answer.status_code == 200, answer.text
    enrolled = answer.json()
    assert enrolled["status"] == "enrolled" and enrolled["name"] == "node-1"
    key_id = enrolled["key_id"]

    _heartbeat(master, "node-1", 1, key, key_id)
    wait_for(lambda: master.api("/api/nodes/node-1"), 5, "node-1 in the table")
    _heartbeat(master, "node-2", 1, key, key_id)  # node-1 forging node-2
    wait_for(lambda: master.rejected("wrong_node") == 1, 5, "the forgery counted")

    # an unknown board waits; the admin approves it under a name
    stranger = bytes.fromhex(secrets.token_hex(32))
    assert _enroll(master, stranger, mac="02:00:00:00:00:09").status_code == 202
    assert "02:00:00:00:00:09" in _bramble(master, "nodes", "pending")
    assert "as extra-1" in _bramble(
        master, "nodes", "approve", "02:00:00:00:00:09", "--name", "extra-1"
    )
    assert _enroll(master, stranger, mac="02:00:00:00:00:09").json()["name"] == "extra-1"
    # another the admin refuses: asking again with that key is refused, not waiting
    intruder = bytes.fromhex(secrets.token_hex(32))
    assert _enroll(master, intruder, mac="02:00:00:00:00:0a").status_code == 202
    assert "refused 02:00:00:00:00:0a" in _bramble(master, "nodes", "refuse", "02:00:00:00:00:0a")
    again = _enroll(master, intruder, mac="02:00:00:00:00:0a")
    assert again.status_code == 403 and "refused by the admin" in again.json()["reason"]
    assert "02:00:00:00:00:0a" not in _bramble(master, "nodes", "pending")

    assert "revoked node-1" in _bramble(master, "nodes", "revoke", "node-1")
    _heartbeat(master, "node-1", 2, key, key_id)  # refused at once: no interval to wait
    wait_for(lambda: master.rejected("revoked") == 1, 5, "the revoked heartbeat counted")
    told = {"enrolled", "pending", "refused", "revoked"}
    wait_for(
        lambda: told <= {c["kind"] for c in master.api("/api/changes")}, 5, "every decision told"
    )
    assert "node-1" in _bramble(master, "nodes", "enrolled")

    # a board as the node image leaves it: the spec without secrets, the join file; it
    # enrolls, and its agent signs with its own key under its enrolled name
    board = tmp_path / "board"
    _join_file(board, master)
    shutil.copy(master.spec_path, board / "bramble.toml")
    spec = str(board / "bramble.toml")
    assert "enrolled as node-2" in _bramble_at(spec, "enroll", "--mac", "02:b7:00:00:00:02")
    assert not (board / "bramble.secrets.toml").exists()
    agent = [sys.executable, "-m", "bramble", "agent", "--spec", spec, "--count", "3"]
    subprocess.run([*agent, "--interval", "0.1", "--engine", "python"], check=True, timeout=30)
    wait_for(lambda: master.api("/api/nodes/node-2")["seq"] > 0, 5, "node-2's own heartbeats")
    assert master.rejected("wrong_node") == 1


def test_master_killed_during_enrollment_enrolls_the_board_once(
    start_master: Callable[..., Master], tmp_path: Path
) -> None:
    """kill -9 the master while boards are asking: each keeps asking with the same key and
    ends enrolled once, under its name, with the key it made."""
    import signal
    import threading

    from bramble.trust.node import enroll, https_post

    leases = tmp_path / "dnsmasq.leases"
    macs = [f"02:b7:00:00:00:{i:02x}" for i in range(1, 4)]
    leases.write_text("".join(f"0 {m} 127.0.0.1 node-{i} *\n" for i, m in enumerate(macs, 1)))
    master = start_master(nodes=3, tls=True, tables={"enroll": f'lease_file = "{leases}"'})
    boards = []
    for mac in macs:
        board = tmp_path / mac.replace(":", "")
        _join_file(board, master)
        boards.append(board)
    found: dict[str, object] = {}
    killed = threading.Event()
    once = threading.Lock()

    def kill() -> None:
        time.sleep(0.01)
        master.stop(signal.SIGKILL)
        killed.set()

    def post(url: str, body: dict[str, object], token: str) -> tuple[int, dict[str, object]]:
        if once.acquire(blocking=False):  # the first request reaches a master that dies
            threading.Thread(target=kill).start()
        return https_post(master.ca_file)(url, body, token)  # type: ignore[arg-type]

    def ask(board: Path, mac: str) -> None:
        identity = enroll(board, mac, post=post, sleep=lambda _: time.sleep(0.2))  # type: ignore[arg-type]
        found[mac] = identity

    threads = [threading.Thread(target=ask, args=(b, m)) for b, m in zip(boards, macs, strict=True)]
    for thread in threads:
        thread.start()
    assert killed.wait(10)
    master.start()
    for thread in threads:
        thread.join(30)
    assert len(found) == 3
    admin = {"Authorization": f"Bearer {master.secrets.admin_token}"}
    nodes = httpx.get(master.base + "/api/trust/nodes", headers=admin, timeout=5).json()
    assert sorted(n["name"] for n in nodes) == ["node-1", "node-2", "node-3"]
    for mac in macs:
        identity = found[mac]
        row = next(n for n in nodes if n["mac"] == mac)
        assert row["key_id"] == identity.key_id  # type: ignore[attr-defined]


def _trust(master: Master, what: str) -> list[dict[str, object]]:
    admin = {"Authorization": f"Bearer {master.secrets.admin_token}"}
    answer = httpx.get(f"{master.base}/api/trust/{what}", headers=admin, timeout=5)
    answer.raise_for_status()
    return list(answer.json())


def test_plain_http_enrollment_is_refused(
    start_master: Callable[..., Master], tmp_path: Path
) -> None:
    """The plain HTTP API refuses every enrollment, a good one included, and says where to
    enroll; the key it was sent is neither enrolled nor kept waiting. A board whose join file
    names an http:// master does not ask at all."""
    from bramble.trust.node import EnrollError, enroll

    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(f"0 {MAC} 127.0.0.1 node-1 *\n")
    master = start_master(nodes=1, tls=True, tables={"enroll": f'lease_file = "{leases}"'})
    body = {"mac": MAC, "key": secrets.token_hex(32), "nonce": secrets.token_urlsafe(16)}
    auth = {"Authorization": f"Bearer {master.secrets.join_token}"}
    plain = httpx.post(master.base + "/api/enroll", json=body, headers=auth, timeout=10)
    assert plain.status_code == 403
    assert plain.json()["status"] == "refused"
    assert master.enroll_base + "/api/enroll" in plain.json()["reason"]
    assert _trust(master, "nodes") == [] and _trust(master, "pending") == []

    board = tmp_path / "board"
    _join_file(board, master, url=master.base)
    with pytest.raises(EnrollError, match="HTTPS only"):
        enroll(board, MAC, attempts=1)
    assert _trust(master, "nodes") == [] and _trust(master, "pending") == []


def test_board_refuses_a_master_its_ca_did_not_sign(
    start_master: Callable[..., Master], tmp_path: Path
) -> None:
    """A master (or anything at its address) whose certificate another CA signed gets no
    request: the board finds it unreachable and keeps its key; with the cluster's CA the
    same board enrolls."""
    from bramble.jobs.tls import create_cluster_tls
    from bramble.trust.node import EnrollError, enroll

    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(f"0 {MAC} 127.0.0.1 node-1 *\n")
    master = start_master(nodes=1, tls=True, tables={"enroll": f'lease_file = "{leases}"'})
    board = tmp_path / "board"
    _join_file(board, master)
    other = create_cluster_tls(tmp_path / "other-ca", cluster="other")
    shutil.copy(other.ca_cert, board / "tls" / "ca.pem")
    with pytest.raises(EnrollError, match="CERTIFICATE_VERIFY_FAILED"):
        enroll(board, MAC, attempts=1)
    assert _trust(master, "nodes") == [] and _trust(master, "pending") == []
    assert not (board / "node.toml").exists()

    shutil.copy(master.ca_file, board / "tls" / "ca.pem")
    assert enroll(board, MAC, attempts=1).name == "node-1"
    assert [n["name"] for n in _trust(master, "nodes")] == ["node-1"]


def test_a_master_without_the_ca_key_enrolls_no_board(start_master: Callable[..., Master]) -> None:
    """No CA key beside the spec: no HTTPS port to enroll on (nothing to prove the master
    with), and the plain API says why."""
    import socket

    from bramble.demo import free_port

    port = free_port()
    master = start_master(nodes=1, tables={"enroll": f"port = {port}"})
    body = {"mac": MAC, "key": secrets.token_hex(32), "nonce": secrets.token_urlsafe(16)}
    auth = {"Authorization": f"Bearer {master.secrets.join_token}"}
    plain = httpx.post(master.base + "/api/enroll", json=body, headers=auth, timeout=10)
    assert plain.status_code == 403 and "no cluster CA key" in plain.json()["reason"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_keys_rotate_nodes_makes_the_board_rotate_at_its_check(
    start_master: Callable[..., Master], tmp_path: Path
) -> None:
    """`keys rotate --nodes` with the admin token marks the node; the board's check, over
    HTTPS with its own key's proof, learns it is due and rotates: a new key id and a new
    worker certificate; checked again, it is not due."""
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(f"0 {MAC} 127.0.0.1 node-1 *\n")
    master = start_master(nodes=1, tls=True, tables={"enroll": f'lease_file = "{leases}"'})
    board = tmp_path / "board"
    _join_file(board, master)
    # the board runs a worker with its own certificate (the master runs no jobs here)
    text = set_keys(master.spec_path.read_text(), "jobs", "tls = true")
    (board / "bramble.toml").write_text(text)
    spec = str(board / "bramble.toml")
    assert "enrolled as node-1" in _bramble_at(spec, "enroll", "--mac", MAC)
    first = (board / "node.toml").read_text()
    cert = (board / "tls" / "worker.pem").read_text()
    assert "not due" in _bramble_at(spec, "enroll", "--mac", MAC, "--if-due")
    # the admin's route needs the admin token
    assert httpx.post(master.base + "/api/trust/rotate", json={}, timeout=5).status_code == 401
    assert "keys due for rotation: node-1" in _bramble(
        master, "keys", "rotate", "--nodes", "--node", "node-1"
    )
    assert "due" in _bramble(master, "nodes", "enrolled").split("node-1", 1)[1]
    out = _bramble_at(spec, "enroll", "--mac", MAC, "--if-due")
    assert "rotated (the admin asked" in out and "enrolled as node-1" in out
    assert (board / "node.toml").read_text() != first
    assert (board / "tls" / "worker.pem").read_text() != cert
    assert "not due" in _bramble_at(spec, "enroll", "--mac", MAC, "--if-due")
    key_id = tomllib.loads((board / "node.toml").read_text())["telemetry"]["key_id"]
    assert key_id in _bramble(master, "nodes", "enrolled")
