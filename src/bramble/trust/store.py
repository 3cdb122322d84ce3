"""Every node's credentials on the master: a small SQLite file beside the history
(`trust.db`, mode 0600), and the requests waiting for approval.

A node is one row keyed by its MAC: enrolling again replaces the row in one transaction, so a
board that retries after a master crash is enrolled once, never twice. Revoking keeps the row
(marked) so its key id stays refused and its MAC waits for approval, and records its worker
certificate's serial (`revoked_certificates`) until the certificate expires: the scheduler
refuses it, even after the board enrolled again with a new one. A node whose name the spec
gives to another MAC loses its certificate the same way (it names the node).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from bramble.errors import BrambleError
from bramble.files import open_private_database

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS node (mac TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, "
    "key_id TEXT NOT NULL UNIQUE, key BLOB NOT NULL, cert TEXT NOT NULL, address TEXT NOT NULL, "
    "enrolled REAL NOT NULL, revoked REAL, old_key_id TEXT NOT NULL DEFAULT '', "
    "old_key BLOB NOT NULL DEFAULT x'', old_until REAL NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS pending (mac TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "key_id TEXT NOT NULL, key BLOB NOT NULL, csr TEXT NOT NULL, address TEXT NOT NULL, "
    "reason TEXT NOT NULL, asked REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS setting (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS revoked_cert (serial TEXT PRIMARY KEY, name TEXT NOT NULL, "
    "revoked REAL NOT NULL, not_after REAL NOT NULL)",
)
_NODE_COLUMNS = (
    "SELECT mac, name, key_id, key, cert, address, enrolled, revoked, old_key_id, old_key, "
    "old_until "
)
MAX_PENDING = 1024
"""Requests kept waiting at most (the oldest dropped): a flood of MACs does not grow the file."""


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """A node the master enrolled: its telemetry key and worker certificate."""

    mac: str
    name: str
    key_id: str
    key: bytes
    cert: str
    address: str
    enrolled: float
    revoked: float | None = None
    old_key_id: str = ""
    """The key it had before it rotated, still good until OLD_UNTIL (the overlap), or ''."""
    old_key: bytes = b""
    old_until: float = 0.0


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """A request waiting for `bramble nodes approve`: NAME is the spec's, or '' if none."""

    mac: str
    name: str
    key_id: str
    key: bytes
    csr: str
    address: str
    reason: str
    asked: float


def _certificate(cert_pem: str) -> tuple[int, float] | None:
    """The serial and expiry (Unix time) of the PEM certificate CERT_PEM, if it is one."""
    if not cert_pem:
        return None
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return None
    return cert.serial_number, cert.not_valid_after_utc.timestamp()


REFUSED = "refused:"
"""The settings naming, by MAC, the key id of a request the admin refused."""
ROTATE = "rotate:"
"""The settings naming, by MAC, when the admin asked that node to rotate its keys."""


class TrustStore:
    """The credentials file at PATH."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def open(self) -> TrustStore:
        """Open (creating if need be) the file; this store, for chaining."""
        self._db = open_private_database(self.path, _SCHEMA)
        return self

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (RuntimeError before `open`)."""
        if self._db is None:
            raise RuntimeError(f"the credentials at {self.path} are not open")
        return self._db

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def nodes(self) -> list[NodeCredentials]:
        """Every node enrolled, revoked ones too, by name."""
        with self._lock:
            rows = self.db.execute(_NODE_COLUMNS + "FROM node ORDER BY name").fetchall()
        return [NodeCredentials(*row) for row in rows]

    def node(self, mac: str) -> NodeCredentials | None:
        """The node enrolled with MAC, revoked or not, if any."""
        with self._lock:
            row = self.db.execute(
                _NODE_COLUMNS + "FROM node WHERE mac = ?",
                (mac,),
            ).fetchone()
        return NodeCredentials(*row) if row is not None else None

    def pending(self) -> list[PendingRequest]:
        """Every request waiting for approval, oldest first."""
        with self._lock:
            rows = self.db.execute(
                "SELECT mac, name, key_id, key, csr, address, reason, asked FROM pending "
                "ORDER BY asked"
            ).fetchall()
        return [PendingRequest(*row) for row in rows]

    def enroll(self, node: NodeCredentials, *, take_name: bool, overlap: float = 0.0) -> None:
        """Record NODE (replacing what its MAC had, and its pending request) in one
        transaction. TAKE_NAME: a node of another MAC holding the name loses it (the spec
        gave it to this MAC); otherwise that is an error. OVERLAP: seconds the key its MAC
        had stays good beside the new one (a rotation), if it was not revoked."""
        with self._lock, self.db:
            had = self.db.execute(
                "SELECT key_id, key, revoked, cert, name FROM node WHERE mac = ?", (node.mac,)
            ).fetchone()
            old: tuple[str, bytes, float] = ("", b"", 0.0)
            if overlap > 0 and had is not None and had[0] != node.key_id and had[2] is None:
                old = (had[0], had[1], node.enrolled + overlap)
            cert = node.cert
            if had is not None and had[2] is None and had[3]:
                if not cert:  # a new telemetry key alone: the worker keeps its certificate
                    cert = had[3]
                elif cert != had[3]:  # a new certificate: the old one ends with the overlap
                    self._revoke_pem(had[4], had[3], node.enrolled + overlap)
            holder = self.db.execute(
                "SELECT mac FROM node WHERE name = ? AND mac <> ?", (node.name, node.mac)
            ).fetchone()
            if holder is not None:
                if not take_name:
                    raise BrambleError(
                        f"the name {node.name} is {holder[0]}'s: revoke it first, or give "
                        "another name"
                    )
                self._revoke_cert(holder[0], node.enrolled)
                self.db.execute("DELETE FROM node WHERE mac = ?", (holder[0],))
            self.db.execute(
                "DELETE FROM node WHERE key_id = ? AND mac <> ?", (node.key_id, node.mac)
            )
            self.db.execute(
                "INSERT OR REPLACE INTO node VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (
                    node.mac,
                    node.name,
                    node.key_id,
                    node.key,
                    cert,
                    node.address,
                    node.enrolled,
                    *old,
                ),
            )
            self.db.execute("DELETE FROM pending WHERE mac = ?", (node.mac,))

    def wait(self, request: PendingRequest) -> None:
        """Record REQUEST as waiting (replacing the MAC's earlier one)."""
        with self._lock, self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO pending VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    request.mac,
                    request.name,
                    request.key_id,
                    request.key,
                    request.csr,
                    request.address,
                    request.reason,
                    request.asked,
                ),
            )
            self.db.execute(
                "DELETE FROM pending WHERE mac NOT IN "
                "(SELECT mac FROM pending ORDER BY asked DESC LIMIT ?)",
                (MAX_PENDING,),
            )

    def revoke(self, name: str, now: float) -> NodeCredentials:
        """Mark the node NAME revoked at NOW; BrambleError if there is none."""
        with self._lock, self.db:
            done = self.db.execute(
                "UPDATE node SET revoked = ? WHERE name = ? AND revoked IS NULL", (now, name)
            ).rowcount
            row = self.db.execute(
                _NODE_COLUMNS + "FROM node WHERE name = ?",
                (name,),
            ).fetchone()
            if done and row is not None:
                self._revoke_cert(row[0], now)
        if row is None:
            raise BrambleError(f"no enrolled node called {name!r} (see `bramble nodes pending`)")
        if not done:
            raise BrambleError(f"{name} is revoked already")
        return NodeCredentials(*row)

    def _revoke_cert(self, mac: str, now: float) -> None:
        """Record the worker certificate of the node MAC as revoked (in a transaction)."""
        row = self.db.execute("SELECT name, cert FROM node WHERE mac = ?", (mac,)).fetchone()
        if row is not None:
            self._revoke_pem(row[0], row[1], now)

    def _revoke_pem(self, name: str, cert_pem: str, when: float) -> None:
        """Record NAME's certificate CERT_PEM as revoked from WHEN on (in a transaction)."""
        found = _certificate(cert_pem)
        if found is not None:
            self.db.execute(
                "INSERT OR REPLACE INTO revoked_cert VALUES (?, ?, ?, ?)",
                (f"{found[0]:X}", name, when, found[1]),
            )

    def revoked_certificates(self, now: float) -> list[tuple[int, str]]:
        """The (serial, node name) of every worker certificate revoked and not expired at
        NOW (those expired are forgotten: the scheduler refuses them anyway)."""
        with self._lock, self.db:
            self.db.execute("DELETE FROM revoked_cert WHERE not_after < ?", (now,))
            rows = self.db.execute(  # a rotated-out one from the end of its overlap
                "SELECT serial, name FROM revoked_cert WHERE revoked <= ?", (now,)
            ).fetchall()
            marked = self.db.execute(  # revoked before the serials were kept
                "SELECT name, cert FROM node WHERE revoked IS NOT NULL"
            ).fetchall()
        found = {int(serial, 16): str(name) for serial, name in rows}
        for name, cert in marked:
            got = _certificate(cert)
            if got is not None and got[1] >= now:
                found[got[0]] = name
        return sorted(found.items())

    def refuse(self, mac: str) -> PendingRequest | None:
        """Drop the request waiting from MAC and remember its key as refused, in one
        transaction; the request, or None if none waits."""
        with self._lock, self.db:
            row = self.db.execute(
                "SELECT mac, name, key_id, key, csr, address, reason, asked FROM pending "
                "WHERE mac = ?",
                (mac,),
            ).fetchone()
            if row is None:
                return None
            request = PendingRequest(*row)
            self.db.execute("DELETE FROM pending WHERE mac = ?", (mac,))
            self.db.execute(
                "INSERT OR REPLACE INTO setting VALUES (?, ?)", (REFUSED + mac, request.key_id)
            )
        return request

    def setting(self, name: str, default: str = "") -> str:
        """The setting NAME, or DEFAULT."""
        with self._lock:
            row = self.db.execute("SELECT value FROM setting WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row is not None else default

    def set_setting(self, name: str, value: str) -> None:
        """Record the setting NAME."""
        with self._lock, self.db:
            self.db.execute("INSERT OR REPLACE INTO setting VALUES (?, ?)", (name, value))

    def mark_rotation(self, names: list[str] | None, now: float) -> list[str]:
        """Mark the enrolled (not revoked) nodes NAMES (None: every one) due to rotate their
        keys from NOW, in one transaction; the names marked. BrambleError for a name that
        is no enrolled node's."""
        with self._lock, self.db:
            rows = self.db.execute(
                "SELECT mac, name FROM node WHERE revoked IS NULL ORDER BY name"
            ).fetchall()
            by_name = {str(name): str(mac) for mac, name in rows}
            wanted = list(by_name) if names is None else list(dict.fromkeys(names))
            unknown = [n for n in wanted if n not in by_name]
            if unknown:
                raise BrambleError(
                    f"no enrolled node called {', '.join(map(repr, unknown))} "
                    "(see `bramble nodes enrolled`)"
                )
            self.db.executemany(
                "INSERT OR REPLACE INTO setting VALUES (?, ?)",
                [(ROTATE + by_name[n], repr(now)) for n in wanted],
            )
        return wanted

    def rotation_marked(self, mac: str) -> float | None:
        """When the admin last asked the node MAC to rotate its keys, if ever."""
        value = self.setting(ROTATE + mac)
        try:
            return float(value) if value else None
        except ValueError:
            return None
