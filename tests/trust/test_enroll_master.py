"""Enrollment against a real `bramble master`: a board enrolls with the join token, signs its
heartbeats with its own key; a forgery in another node's name and a revoked node's heartbeats
are refused and counted; the admin's commands list, approve and revoke."""

from __future__ import annotations

import secrets
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
    from typer.testing import CliRunner

    from bramble.cli import app

    run = CliRunner().invoke(app, [*args, "--spec", str(master.spec_path)], env={"COLUMNS": "200"})
    assert run.exit_code == 0, run.output
    return run.output


def test_enroll_sign_forge_revoke(start_master: Callable[..., Master], tmp_path: Path) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text(f"0 {MAC} 127.0.0.1 node-1 *\n")
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
    kinds = [c["kind"] for c in master.api("/api/changes")]
    assert {"enrolled", "pending", "refused", "revoked"} <= set(kinds)
    assert "node-1" in _bramble(master, "nodes", "enrolled")
