"""The board's side of enrollment: make its own keys, ask the master, keep the answer.

`bramble enroll` runs before the agent and the worker. With credentials already there it does
nothing. Otherwise it makes a telemetry key and a worker key with its CSR, keeps them (mode
0600) before it asks, so every retry sends the same key and the master enrolls the board once
however often the answer is lost, and asks until the master enrolls it: backing off (with
jitter) while it waits for approval, is rate limited or cannot reach the master. It asks over
HTTPS only, of a master whose certificate the cluster CA of the node image signed: the key
never crosses the network in the clear.

`bramble enroll --if-due` (the node image's hourly `bramble-rotate.timer`) asks the master
whether this board's keys are due for rotation, with a proof made with its current key, and
rotates them when the master, proving its answer with the same key, says they are.

The credentials file (`/etc/bramble/node.toml`, 0600) has the shape of the secrets file's
`[telemetry]` table, which the agent (and the compiled agent, `--secrets FILE`) reads, plus
the node's name: `[node] name`, `[telemetry] key_id, key`.
"""

from __future__ import annotations

import json
import logging
import os
import random
import secrets
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bramble.errors import BrambleError

log = logging.getLogger(__name__)

CREDENTIALS = "node.toml"
JOIN = "join.toml"
_PENDING = "node.pending.toml"
_PENDING_KEY = "worker-key.pending.pem"
FIRST_WAIT, MAX_WAIT = 1.0, 60.0


class EnrollError(BrambleError):
    """The board cannot enroll (a refusal, or nothing to enroll with)."""


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    """What a board holds after enrolling."""

    name: str
    key_id: str
    key: bytes


@dataclass(frozen=True, slots=True)
class Join:
    """The node image's join file: where the master is and the join token."""

    master: str
    token: str


def read_join(path: Path) -> Join:
    """The join file at PATH; EnrollError if it is missing or bad, or names a master to ask
    over plain HTTP (the board's key would cross the network in the clear)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))["join"]
        join = Join(str(data["master"]).rstrip("/"), str(data["token"]))
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise EnrollError(f"{path}: no join file to enroll with ({exc})") from None
    if not join.master.startswith("https://"):
        raise EnrollError(
            f"{path}: the master to enroll with, {join.master}, is not an https:// address; "
            "boards enroll over HTTPS only (render the node image again with this bramble)"
        )
    return join


def read_identity(path: Path) -> NodeIdentity | None:
    """The credentials at PATH, or None if there are none (or they are unreadable)."""
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        return NodeIdentity(
            str(data["node"]["name"]),
            str(data["telemetry"]["key_id"]),
            bytes.fromhex(data["telemetry"]["key"]),
        )
    except (OSError, KeyError, TypeError, ValueError, tomllib.TOMLDecodeError):
        return None


def identity_text(identity: NodeIdentity) -> str:
    """The credentials file's text for IDENTITY."""
    return (
        "# This board's own credentials, made on it at enrollment: keep private (0600).\n"
        f"[node]\nname = {json.dumps(identity.name)}\n\n"
        f"[telemetry]\nkey_id = {json.dumps(identity.key_id)}\n"
        f'key = "{identity.key.hex()}"\n'
    )


def write_private(path: Path, text: str) -> None:
    """Write TEXT to PATH atomically, mode 0600 from the start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def board_mac(interface: str, sys_class_net: Path = Path("/sys/class/net")) -> str:
    """The MAC of INTERFACE (the cluster interface), as the kernel shows it."""
    try:
        return (sys_class_net / interface / "address").read_text().strip()
    except OSError as exc:
        raise EnrollError(f"cannot read the MAC of {interface}: {exc.strerror}") from None


def _pending(directory: Path, tls_dir: Path | None) -> dict[str, str]:
    """The keys this board asks with: made once and kept, so a retry sends the same ones."""
    path = directory / _PENDING
    try:
        kept = tomllib.loads(path.read_text("utf-8"))
        return {"key": str(kept["key"]), "csr": str(kept.get("csr", ""))}
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        pass
    csr = ""
    if tls_dir is not None:
        from bramble.trust.certs import make_csr

        worker_key, csr = make_csr("worker")
        # beside the one in use (an upgraded board's), until its certificate comes
        write_private(tls_dir / _PENDING_KEY, worker_key)
    key = secrets.token_hex(32)
    write_private(path, f'key = "{key}"\ncsr = {json.dumps(csr)}\n')
    return {"key": key, "csr": csr}


Post = Callable[[str, dict[str, Any], str], tuple[int, dict[str, Any]]]
"""(url, body, join token) -> (HTTP status, answer); OSError when the master is unreachable."""


def https_post(ca_file: Path) -> Post:
    """A Post over HTTPS to a master whose certificate the CA at CA_FILE (the node image's
    `tls/ca.pem`) signed for the address asked; EnrollError without that CA. A master that
    does not prove it is one (another CA, another name) is unreachable, and told nothing.
    (The standard library's client: one request per boot needs no more, and a board starts
    it faster.)"""
    import http.client
    from urllib.parse import urlsplit

    from bramble.trust.https import HttpsError, client_context

    try:
        context = client_context(ca_file)
    except HttpsError as exc:
        raise EnrollError(str(exc)) from None

    def post(url: str, body: dict[str, Any], token: str) -> tuple[int, dict[str, Any]]:
        where = urlsplit(url)
        if where.scheme != "https" or not where.hostname:
            raise OSError(f"{url} is not an https:// address")
        connection = http.client.HTTPSConnection(
            where.hostname, where.port or 443, timeout=10, context=context
        )
        try:
            connection.request(
                "POST",
                where.path or "/",
                json.dumps(body),
                {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            text = response.read(1 << 20)
        except (OSError, http.client.HTTPException) as exc:
            raise OSError(str(exc) or type(exc).__name__) from None
        finally:
            connection.close()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = {}
        return response.status, answer if isinstance(answer, dict) else {}

    return post


def enroll(
    directory: Path,
    mac: str,
    *,
    tls_dir: Path | None = None,
    ca_file: Path | None = None,
    post: Post | None = None,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = 0,
    rotate: bool = False,
) -> NodeIdentity:
    """This board's identity: from DIRECTORY's credentials file, else by enrolling with its
    join file as MAC, asking until enrolled (ATTEMPTS > 0: at most that many times). With
    TLS_DIR, a worker key and CSR are made there and the signed certificate written beside.
    It asks over HTTPS (POST, by default) a master whose certificate CA_FILE (default
    DIRECTORY/tls/ca.pem, the node image's) signed.
    ROTATE: with credentials already, ask for a new key (and, with TLS_DIR, a new worker
    certificate for a new worker key), proving the request with the current key; the master
    keeps both keys and both certificates good for an overlap, so restarting the agent and
    the worker on the new ones loses no heartbeat and no task."""
    path = directory / CREDENTIALS
    have = read_identity(path)
    if have is not None and not rotate:
        return have
    join = read_join(directory / JOIN)
    if post is None:
        post = https_post(ca_file or directory / "tls" / "ca.pem")
    asking = _pending(directory, tls_dir)
    wait = FIRST_WAIT
    tried = 0
    while True:
        tried += 1
        body = {"mac": mac, "key": asking["key"], "nonce": secrets.token_urlsafe(16)}
        if asking["csr"]:
            body["csr"] = asking["csr"]
        if have is not None:
            from bramble.trust.service import rotation_proof

            body["proof"] = rotation_proof(have.key, mac, asking["key"], body["nonce"])
        try:
            status, answer = post(join.master + "/api/enroll", body, join.token)
        except OSError as exc:
            status, answer = 0, {"reason": f"master unreachable: {exc}"}
        if status == 200 and answer.get("status") == "enrolled":
            identity = NodeIdentity(
                str(answer["name"]), str(answer["key_id"]), bytes.fromhex(asking["key"])
            )
            cert = str(answer.get("cert") or "")
            if cert and tls_dir is not None and (tls_dir / _PENDING_KEY).exists():
                os.replace(tls_dir / _PENDING_KEY, tls_dir / "worker-key.pem")
                write_private(tls_dir / "worker.pem", cert)
            write_private(path, identity_text(identity))
            (directory / _PENDING).unlink(missing_ok=True)
            log.info("enrolled as %s (key %s)", identity.name, identity.key_id)
            return identity
        reason = str(answer.get("reason", f"HTTP {status}"))
        if status == 403 and "join token" in reason:
            raise EnrollError(f"the master refused the join token: {reason}")
        if attempts and tried >= attempts:
            raise EnrollError(f"not enrolled after {tried} requests: {reason}")
        log.info("not enrolled yet (%s); asking again in %.0f s", reason, wait)
        sleep(wait * random.uniform(0.5, 1.0))
        wait = min(MAX_WAIT, wait * 2)


def check_due(
    directory: Path,
    mac: str,
    *,
    post: Post | None = None,
    ca_file: Path | None = None,
    clock: Callable[[], float] = time.time,
) -> tuple[bool, str]:
    """Ask the master of DIRECTORY's join file whether this board's keys are due for
    rotation: (due, why). The question carries a proof made with the board's current key;
    the answer counts only with the master's proof made with the same key, so nothing but
    the master that enrolled this board can make it rotate. EnrollError when it is not
    enrolled, the master is unreachable or refuses, or the answer is not proven."""
    from bramble.trust.service import due_answer_proof, due_proof

    identity = read_identity(directory / CREDENTIALS)
    if identity is None:
        raise EnrollError(f"{directory / CREDENTIALS}: not enrolled yet (`bramble enroll`)")
    join = read_join(directory / JOIN)
    if post is None:
        post = https_post(ca_file or directory / "tls" / "ca.pem")
    nonce, ts = secrets.token_urlsafe(16), int(clock())
    body = {
        "mac": mac,
        "key_id": identity.key_id,
        "nonce": nonce,
        "ts": ts,
        "proof": due_proof(identity.key, mac, identity.key_id, nonce, ts),
    }
    try:
        status, answer = post(join.master + "/api/enroll/due", body, join.token)
    except OSError as exc:
        raise EnrollError(f"master unreachable: {exc}") from None
    said = str(answer.get("status", ""))
    reason = str(answer.get("reason", f"HTTP {status}"))
    if status != 200 or said not in ("due", "not_due"):
        raise EnrollError(f"the master refused the rotation check: {reason}")
    import hmac

    expected = due_answer_proof(identity.key, mac, nonce, said)
    if not hmac.compare_digest(expected, str(answer.get("proof", ""))):
        raise EnrollError("the answer to the rotation check is not proven with this board's key")
    return said == "due", reason


def rotate_if_due(
    directory: Path,
    mac: str,
    *,
    tls_dir: Path | None = None,
    ca_file: Path | None = None,
    post: Post | None = None,
    sleep: Callable[[float], None] = time.sleep,
    attempts: int = 0,
    clock: Callable[[], float] = time.time,
) -> tuple[NodeIdentity | None, str]:
    """Rotate this board's keys (see `enroll`, ROTATE) if the master says they are due, or
    if a rotation was interrupted (its new keys kept, the answer lost): (the new identity,
    or None when not due; why)."""
    if read_identity(directory / CREDENTIALS) is not None and (directory / _PENDING).exists():
        due, why = True, "a rotation was interrupted: finishing it"
    else:
        due, why = check_due(directory, mac, post=post, ca_file=ca_file, clock=clock)
    if not due:
        return None, why
    log.info("rotating this board's keys: %s", why)
    identity = enroll(
        directory,
        mac,
        tls_dir=tls_dir,
        ca_file=ca_file,
        post=post,
        sleep=sleep,
        attempts=attempts,
        rotate=True,
    )
    return identity, why
