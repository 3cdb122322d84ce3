"""The scheduler's gate: a worker's certificate may serve as a worker, never as a client.

Every node holds a worker certificate (its own since enrollment, OU `bramble worker`; the
shared one of older clusters, CN `bramble-worker`), so anyone with root on a node holds one.
Dask accepts any certificate the cluster CA signed, for anything; the gate refuses, to a
connection whose peer certificate is a worker's, the scheduler's operations that submit work,
run code or change the cluster (`register-client` first of all). Only the master's client
certificate may do those.

It also refuses every new connection whose peer certificate the master revoked
(`bramble nodes revoke`): the master writes the revoked serial numbers to a small public file
beside its history (`REVOKED_FILE`, one hexadecimal serial and the node's name a line), and
the scheduler, which runs apart from the master as an unprivileged user, reads it again
whenever it changed (one `stat` per new connection), so a revocation holds from the next
connection on, without a restart: a revoked node's restarted worker cannot join again.

`worker_certificate` and `certificate_serial` are pure (the peer certificate as Python's ssl
module gives it); `guard_scheduler` wraps the scheduler's handlers before it starts.

Connections open before a revocation are not cut here: the master removes a revoked node's
worker (`jobs.liveness`), which closes them; the worker's reconnection is then refused. The
file is found by the history's path in the spec: a master run with another `--db` must be
given a scheduler that looks there.

Not covered: the worker's own stream, which Dask gives the same message handlers as a
client's; a worker certificate cannot open a client stream, but a modified worker could send
client messages on its worker stream.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WORKER_OU = "bramble worker"
REVOKED_FILE = "revoked-certs.txt"
"""The revoked certificates' serials, beside the master's history (and trust.db)."""
SHARED_WORKER_CN = "bramble-worker"
REFUSED_TO_WORKERS = frozenset(
    {
        "register-client",
        "scatter",
        "gather",
        "run_function",
        "broadcast",
        "feed",
        "proxy",
        "terminate",
        "close",
        "restart",
        "restart_workers",
        "retire_workers",
        "rebalance",
        "replicate",
        "retry",
        "set_resources",
        "set_restrictions",
        "register_scheduler_plugin",
        "unregister_scheduler_plugin",
        "register_worker_plugin",
        "unregister_worker_plugin",
        "register_nanny_plugin",
        "unregister_nanny_plugin",
        "start_task_metadata",
        "stop_task_metadata",
        "dump_cluster_state_to_url",
        "benchmark_hardware",
        "get_logs",
        "logs",
        "worker_logs",
    }
)
"""Scheduler operations a worker certificate may not call: they submit work, run code, read
other jobs' data or logs, or change the cluster."""


def worker_certificate(peercert: object) -> bool:
    """Whether PEERCERT (ssl's `getpeercert()` dict) is a node's worker certificate."""
    if not isinstance(peercert, dict):
        return False
    names: dict[str, str] = {}
    for rdn in peercert.get("subject", ()):
        for pair in rdn:
            if isinstance(pair, tuple) and len(pair) == 2:
                names[str(pair[0])] = str(pair[1])
    return (
        names.get("organizationalUnitName") == WORKER_OU
        or names.get("commonName") == SHARED_WORKER_CN
    )


def certificate_serial(peercert: object) -> int | None:
    """The serial number of PEERCERT (ssl's `getpeercert()` dict), if it has one."""
    if not isinstance(peercert, dict):
        return None
    try:
        return int(str(peercert.get("serialNumber", "")), 16)
    except ValueError:
        return None


def _subject(peercert: object, field: str) -> str:
    if not isinstance(peercert, dict):
        return ""
    for rdn in peercert.get("subject", ()):
        for pair in rdn:
            if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == field:
                return str(pair[1])
    return ""


def format_revocations(revoked: Iterable[tuple[int, str]]) -> str:
    """The text of REVOKED_FILE for REVOKED, (serial, node name) pairs."""
    lines = ["# worker certificates the master revoked: serial (hex) and node; the scheduler"]
    lines.append("# refuses them. Written by the master from trust.db: do not edit.")
    lines += [f"{serial:X} {name}" for serial, name in sorted(revoked)]
    return "\n".join(lines) + "\n"


def parse_revocations(text: str) -> frozenset[int]:
    """The serials in TEXT (REVOKED_FILE's); lines that are not one are skipped."""
    serials = set()
    for line in text.splitlines():
        word = line.split("#", 1)[0].split(maxsplit=1)
        if word:
            try:
                serials.add(int(word[0], 16))
            except ValueError:
                log.warning("%s: not a serial number, skipped: %r", REVOKED_FILE, line[:80])
    return frozenset(serials)


class Revocations:
    """The revoked serials in the file at PATH, read again whenever the file changes (or
    appears, or goes: no file, nothing revoked). A file that cannot be read keeps the serials
    read last (a revocation is never forgotten by an error)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._serials: frozenset[int] = frozenset()

    def serials(self) -> frozenset[int]:
        """The serials revoked now."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._serials = None, frozenset()
            return self._serials
        except OSError as exc:
            log.warning("cannot check %s: %s (the serials read last still hold)", self.path, exc)
            return self._serials
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            try:
                self._serials = parse_revocations(self.path.read_text())
            except (OSError, UnicodeDecodeError) as exc:
                log.warning("cannot read %s: %s (the serials read last still hold)", self.path, exc)
                return self._serials
            self._stamp = stamp
            log.info("%d revoked certificates (%s)", len(self._serials), self.path)
        return self._serials

    def refused(self, peercert: object) -> bool:
        """Whether PEERCERT's serial is revoked."""
        serial = certificate_serial(peercert)
        return serial is not None and serial in self.serials()


def _guarded(op: str, handler: Callable[..., Any]) -> Callable[..., Any]:
    wants_comm = "comm" in inspect.signature(handler).parameters

    async def guarded(comm: Any, **kwargs: Any) -> Any:
        info = getattr(comm, "extra_info", None) or {}
        if worker_certificate(info.get("peercert")):
            log.warning("refused %s from %s: a worker's certificate", op, comm.peer_address)
            message = f"a worker's certificate may not {op}: only the master's client may"
            if op == "register-client":  # the client waits for this answer: say why, end
                await comm.write([{"op": "stream-start", "error": message}])
                await comm.close()
                return None
            raise PermissionError(message)
        result = handler(comm=comm, **kwargs) if wants_comm else handler(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    return guarded


def guard_scheduler(scheduler: Any, revocations: Revocations | None = None) -> None:
    """Refuse REFUSED_TO_WORKERS to worker certificates on SCHEDULER, and every new
    connection to a certificate REVOCATIONS holds (call before it starts listening)."""
    handlers: dict[str, Callable[..., Any]] = scheduler.handlers
    for op in REFUSED_TO_WORKERS & set(handlers):
        handlers[op] = _guarded(op, handlers[op])
    if revocations is None:
        return
    handle_comm: Callable[[Any], Any] = scheduler.handle_comm

    async def checked(comm: Any) -> None:
        peercert = (getattr(comm, "extra_info", None) or {}).get("peercert")
        if revocations.refused(peercert):
            log.warning(
                "refused a connection from %s: the certificate of %s (serial %X) is revoked",
                comm.peer_address,
                _subject(peercert, "commonName") or "?",
                certificate_serial(peercert),
            )
            comm.abort()
            return
        await handle_comm(comm)

    scheduler.handle_comm = checked  # the listener takes it when the scheduler starts
