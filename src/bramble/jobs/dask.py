"""Dask with the cluster's mutual TLS: `connect()` (as `bramble.jobs.connect()`), the client
every job and the master use, and each role's `Security`."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bramble.errors import BrambleError
from bramble.jobs.config import ENV_SCHEDULER, ENV_TLS_DIR, JobsConfig, jobs_config
from bramble.jobs.tls import Role, TlsMaterial, TlsPaths

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)


class SchedulerUnreachableError(BrambleError):
    """The Dask scheduler did not answer (or refused our certificate)."""


def security_for(tls: TlsPaths | TlsMaterial | None, role: Role) -> Any:
    """A `distributed.Security` for ROLE: mutual TLS with the cluster CA, or none if TLS is off.

    TLS is the cluster's TLS directory, or its files already read (PEM text in memory).
    """
    from distributed import Security

    if tls is None:
        return Security()  # type: ignore[no-untyped-call]
    if isinstance(tls, TlsPaths):
        tls.check(role)
        ca, cert, key = str(tls.ca_cert), str(tls.cert(role)), str(tls.key(role))
    else:
        ca, cert, key = tls.ca, tls.cert, tls.key
    return Security(  # type: ignore[no-untyped-call]
        tls_ca_file=ca,
        tls_client_cert=cert,
        tls_client_key=key,
        tls_scheduler_cert=cert if role == "scheduler" else None,
        tls_scheduler_key=key if role == "scheduler" else None,
        tls_worker_cert=cert if role == "worker" else None,
        tls_worker_key=key if role == "worker" else None,
        require_encryption=True,
    )


_given: TlsMaterial | None = None


def use_client_material(material: TlsMaterial | None) -> None:
    """The client certificate this process was handed (a job driver gets it from the master,
    as it runs without the rights to read the key): `connect()` uses it."""
    global _given
    _given = material


def probe(scheduler: str, *, timeout: float = 1.0) -> None:
    """SchedulerUnreachableError unless something accepts TCP connections at SCHEDULER.

    A quick check before a Dask client, whose own attempts last the whole connect timeout.
    """
    host, _, port = scheduler.split("://", 1)[-1].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        raise SchedulerUnreachableError(
            f"cannot connect to the Dask scheduler at {scheduler}: {exc}"
        ) from exc


def client_for(config: JobsConfig, *, timeout: float = 10.0) -> Client:
    """A client of the cluster described by CONFIG; SchedulerUnreachableError if it fails."""
    return _client(config.scheduler, config.tls, timeout)


def _client(scheduler: str, tls: TlsPaths | TlsMaterial | None, timeout: float) -> Client:
    from distributed import Client

    security = security_for(tls, "client")
    log.debug("connecting to %s", scheduler)
    try:
        return Client(scheduler, security=security, timeout=timeout)  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise SchedulerUnreachableError(
            f"cannot connect to the Dask scheduler at {scheduler}: {exc}"
        ) from exc


def connect(spec: Path | str | None = None, *, timeout: float = 10.0) -> Client:
    """Return a Dask client connected to the cluster over mutual TLS.

    Inside a job started by `bramble run` the environment ($BRAMBLE_SCHEDULER) names the
    scheduler and the master hands the driver its certificate; elsewhere they come from the
    spec (SPEC, $BRAMBLE_SPEC, ./bramble.toml, /etc/bramble/bramble.toml).
    """
    scheduler = os.environ.get(ENV_SCHEDULER)
    if spec is None and scheduler:
        tls_dir = os.environ.get(ENV_TLS_DIR)
        tls: TlsPaths | TlsMaterial | None = None
        if scheduler.startswith("tls://"):
            tls = _given if _given is not None else (TlsPaths(Path(tls_dir)) if tls_dir else None)
        return _client(scheduler, tls, timeout)
    from bramble.cluster import find_cluster

    cluster = find_cluster(Path(spec) if spec is not None else None, env=True)
    return client_for(jobs_config(cluster), timeout=timeout)
