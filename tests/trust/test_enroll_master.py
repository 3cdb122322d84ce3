"""Enrollment against a real `bramble master`: a board enrolls with the join token, signs its
heartbeats with its own key; a forgery in another node's name and a revoked node's heartbeats
are refused and counted; the admin's commands list, approve and revoke."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from bramble_testing import Master, sample_body, wait_for

from bramble.telemetry.encode import sign

MAC = "02:b7:00:00:00:01"


def _enroll(master: Master, key: bytes, mac: str = MAC, token: str | None = None) -> httpx.Response:
    body = {"mac": mac, "key": key.hex(), "nonce": secrets.token_urlsafe(16)}
    auth = {"Authorization": f"Bearer {token or master.secrets.join_token}"}
    return httpx.post(master.base + "/api/enroll", json=body, headers=auth, timeout=10)


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
    master = start_master(nodes=2, tables={"enroll": f'lease_file = "{leases}"'})
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
    board.mkdir()
    shutil.copy(master.spec_path, board / "bramble.toml")
    (board / "join.toml").write_text(
        f'[join]\nmaster = "{master.base}"\ntoken = "{master.secrets.join_token}"\n'
    )
    spec = str(board / "bramble.toml")
    assert "enrolled as node-2" in _bramble_at(spec, "enroll", "--mac", "02:b7:00:00:00:02")
    assert not (board / "bramble.secrets.toml").exists()
    agent = [sys.executable, "-m", "bramble", "agent", "--spec", spec, "--count", "3"]
    subprocess.run([*agent, "--interval", "0.1", "--engine", "python"], check=True, timeout=30)
    wait_for(lambda: master.api("/api/nodes/node-2")["seq"] > 0, 5, "node-2's own heartbeats")
    assert master.rejected("wrong_node") == 1
