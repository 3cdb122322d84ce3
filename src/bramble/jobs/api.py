"""The jobs part of the master's HTTP API: `router`, included by the master app.

Reading the job list, job records and the cluster's workers is open like the rest of the API;
job output, the exec log, submitting, cancelling and exec need the admin token in
``Authorization: Bearer <token>`` (output may hold anything a job printed). The recorded
submitter is who authenticated: the admin token's holder, at the address it came from.

The router finds its :class:`JobsService` in ``app.state.jobs``, where the master's lifespan
puts it (see `bramble.master.main`) and from where it closes it; without one the routes
answer 503, saying why (``app.state.jobs_error``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from bramble.errors import BrambleError
from bramble.jobs.config import JobsConfig, jobs_config
from bramble.jobs.exec import ExecError, ExecRequest, ExecResponse, run_exec
from bramble.jobs.runner import JobFileError, JobRunner
from bramble.jobs.store import (
    FINAL_STATES,
    ExecRecord,
    JobRecord,
    JobStore,
    OutputChunk,
    UnknownJobError,
)

if TYPE_CHECKING:
    from distributed import Client

    from bramble.cluster import Cluster

log = logging.getLogger(__name__)

RETRY_AFTER = 5.0  # seconds before trying an unreachable scheduler again
POLL_EVERY = 0.1  # how often a long poll looks for news
CLOSE_TIMEOUT = 5.0  # seconds the master's Dask client may take to close


class JobsService:
    """What the jobs routes share: config, store, runner, admin token and a Dask client."""

    def __init__(self, config: JobsConfig, token: str, *, max_running: int = 4) -> None:
        self.config = config
        self.token = token
        self.store = JobStore(config.db_path)
        self.runner = JobRunner(self.store, config, max_running=max_running)
        self._client: Client | None = None
        self._client_lock = threading.Lock()
        self._failure: tuple[float, str] | None = None  # when and why connecting last failed
        self._bokeh: tuple[Client, bool] | None = None  # whether that client's scheduler has it

    def client(self) -> Client:
        """The master's own Dask client (for exec and the workers view), made on first use.

        When the scheduler does not answer, that is remembered for RETRY_AFTER seconds: the
        dashboard asks for the workers every few seconds, and each attempt would otherwise
        hold a request thread for the whole connect timeout.
        """
        from bramble.jobs.dask import SchedulerUnreachableError, client_for, probe

        with self._client_lock:
            if self._client is not None and self._client.status == "running":
                return self._client
            now = time.monotonic()
            if self._failure is not None and now - self._failure[0] < RETRY_AFTER:
                raise SchedulerUnreachableError(self._failure[1])
            if self._client is not None:  # lost its scheduler: make a fresh one
                with contextlib.suppress(Exception):
                    self._client.close(timeout=2)  # type: ignore[no-untyped-call]
                self._client = None
            try:
                probe(self.config.scheduler, timeout=1.0)
                self._client = client_for(self.config, timeout=10)
            except SchedulerUnreachableError as exc:
                self._failure = (now, str(exc))
                raise
            self._failure = None
            return self._client

    def dashboard_link(self, client: Client, services: dict[str, Any]) -> str | None:
        """The link to Dask's own dashboard, or None when it is not served.

        The scheduler serves its HTTP routes without bokeh too, `/status` then saying only
        that it needs bokeh: so the link is shown only where the scheduler has bokeh
        (asked once per connection). The link is `dashboard_link` where viewers reach the
        scheduler by another address (the lab's host, through its forwarder).
        """
        if "dashboard" not in services:
            return None
        from bramble.jobs.servers import scheduler_has_bokeh

        known = self._bokeh
        if known is None or known[0] is not client:
            try:
                has = bool(client.run_on_scheduler(scheduler_has_bokeh))  # type: ignore[no-untyped-call]
            except Exception:  # an old or foreign scheduler: assume the plain case
                log.debug("cannot ask the scheduler about bokeh", exc_info=True)
                has = True
            self._bokeh = known = (client, has)
        return (self.config.dashboard_link or self.config.dashboard_url) if known[1] else None

    def close(self) -> None:
        """Cancel running jobs and close the Dask client."""
        self.runner.close()
        with self._client_lock:
            if self._client is not None:
                with contextlib.suppress(Exception):  # a scheduler gone away: nothing to tell
                    self._client.close(timeout=CLOSE_TIMEOUT)  # type: ignore[no-untyped-call]
                self._client = None


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key putting node-2 before node-10 (numbers as numbers, text as text)."""
    return tuple((1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"(\d+)", name) if p)


def create_service(cluster: Cluster, *, max_running: int = 4) -> JobsService:
    """The jobs service of CLUSTER (it starts a standby driver; `close` ends it)."""
    return JobsService(jobs_config(cluster), cluster.secrets().admin_token, max_running=max_running)


def get_service(request: Request) -> JobsService:
    """The app's jobs service; 503 when the master has none (and why)."""
    state = request.app.state
    service: JobsService | None = getattr(state, "jobs", None)
    if service is None:
        why = getattr(state, "jobs_error", "this server runs no jobs service")
        raise HTTPException(503, f"jobs are not configured: {why}")
    return service


ServiceDep = Annotated[JobsService, Depends(get_service)]


def require_admin(
    service: ServiceDep, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Reject the request unless it carries the admin token."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), service.token.encode()
    ):
        raise HTTPException(401, "admin token required", headers={"WWW-Authenticate": "Bearer"})


AdminDep = Depends(require_admin)


class JobView(JobRecord):
    """A job record with its duration, as the API returns it."""

    duration_s: float | None = None


MAX_ID = 2**63 - 1  # SQLite's integers
JobId = Annotated[int, PathParam(ge=0, le=MAX_ID, description="A job's id.")]
MAX_LONG_POLLS = 64
"""Long polls waiting at once; past that, a poll answers at once (the client polls again)."""
_long_polls = 0


class SubmitRequest(BaseModel):
    """A job submission."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    file: str = Field(
        description="Job file: inside the jobs directory, absolute or relative to it.",
        max_length=4096,
    )
    args: list[str] = Field(default=[], max_length=256)
    submitter: str = Field(
        default="",
        description="Ignored: the job is recorded as submitted by whoever authenticated.",
        max_length=256,
    )


def _authenticated(request: Request) -> str:
    """Who sent REQUEST, as far as the master can tell: the admin token, from an address."""
    client = request.client
    return f"admin@{client.host if client is not None else 'unknown'}"


class LogsView(BaseModel):
    """Output chunks after a sequence number; pass ``next`` as ``after`` to follow."""

    id: int
    state: str
    finished: bool
    chunks: list[OutputChunk]
    next: int


class WorkerView(BaseModel):
    """One Dask worker (one per node)."""

    name: str
    address: str
    nthreads: int
    memory_limit: int
    executing: int
    in_memory: int


class ClusterView(BaseModel):
    """The Dask cluster as the master sees it."""

    scheduler: str
    # Dask's own dashboard, when the scheduler serves one (it needs bokeh on the master).
    dashboard_url: str | None
    workers: list[WorkerView]
    error: str | None = None


def _view(record: JobRecord) -> JobView:
    return JobView(**record.model_dump(), duration_s=record.duration)


def _get(service: JobsService, job_id: int) -> JobRecord:
    try:
        return service.store.get(job_id)
    except UnknownJobError:
        raise HTTPException(404, f"no job {job_id}") from None


router = APIRouter(tags=["jobs"])


@router.get("/api/jobs")
def list_jobs(
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    state: str | None = None,
) -> list[JobView]:
    """The newest jobs, newest first."""
    return [_view(r) for r in service.store.list_jobs(limit, state)]


@router.get("/api/jobs/cluster")
def cluster(service: ServiceDep) -> ClusterView:
    """The scheduler, its dashboard link and the workers with their current task counts."""
    try:
        client = service.client()
        info = client.scheduler_info(n_workers=-1)
    except Exception as exc:  # no scheduler, or something else on its port: say so, don't fail
        log.debug("scheduler unreachable", exc_info=True)
        return ClusterView(
            scheduler=service.config.scheduler, dashboard_url=None, workers=[], error=str(exc)
        )
    workers: list[WorkerView] = []
    for addr, w in info.get("workers", {}).items():
        metrics: dict[str, Any] = w.get("metrics", {})
        task_counts: dict[str, Any] = metrics.get("task_counts", {})
        workers.append(
            WorkerView(
                name=str(w.get("name") or addr),
                address=addr,
                nthreads=int(w.get("nthreads", 0)),
                memory_limit=int(w.get("memory_limit") or 0),
                executing=int(task_counts.get("executing", metrics.get("executing", 0))),
                in_memory=int(task_counts.get("memory", metrics.get("in_memory", 0))),
            )
        )
    return ClusterView(
        scheduler=service.config.scheduler,
        dashboard_url=service.dashboard_link(client, info.get("services", {})),
        workers=sorted(workers, key=lambda w: natural_key(w.name)),
    )


@router.get("/api/jobs/{job_id}")
def get_job(service: ServiceDep, job_id: JobId) -> JobView:
    """One job's record."""
    return _view(_get(service, job_id))


@router.get("/api/jobs/{job_id}/logs", dependencies=[AdminDep])
async def job_logs(
    service: ServiceDep,
    job_id: JobId,
    after: Annotated[int, Query(ge=0, le=MAX_ID)] = 0,
    wait: Annotated[float, Query(ge=0, le=30)] = 0,
) -> LogsView:
    """The job's captured stdout/stderr chunks after sequence number AFTER (admin token).

    With WAIT > 0 this is a long poll: when there is nothing new and the job still runs, the
    answer waits up to WAIT seconds for output or the end of the job. Waiting holds no
    thread, so long polls never hold up other requests; past MAX_LONG_POLLS at once, a poll
    answers at once.
    """
    global _long_polls
    deadline = time.monotonic() + wait
    waiting = wait > 0 and _long_polls < MAX_LONG_POLLS
    if waiting:
        _long_polls += 1
    try:
        while True:
            version = service.store.version()
            record, chunks = await run_in_threadpool(_read_logs, service, job_id, after)
            left = deadline - time.monotonic()
            if chunks or record.state in FINAL_STATES or left <= 0 or not waiting:
                break
            while service.store.version() == version and deadline - time.monotonic() > 0:
                await asyncio.sleep(min(POLL_EVERY, max(0.0, deadline - time.monotonic())))
    finally:
        if waiting:
            _long_polls -= 1
    return LogsView(
        id=job_id,
        state=record.state,
        finished=record.state in FINAL_STATES,
        chunks=chunks,
        next=chunks[-1].seq if chunks else after,
    )


def _read_logs(
    service: JobsService, job_id: int, after: int
) -> tuple[JobRecord, list[OutputChunk]]:
    return _get(service, job_id), service.store.output(job_id, after)


@router.post("/api/jobs", status_code=201, dependencies=[AdminDep])
def submit_job(service: ServiceDep, body: SubmitRequest, request: Request) -> JobView:
    """Submit a job file from the jobs directory; the master runs its driver (admin token)."""
    try:
        record = service.runner.submit(body.file, body.args, _authenticated(request))
    except JobFileError as exc:
        raise HTTPException(400, str(exc)) from exc
    return _view(record)


@router.post("/api/jobs/{job_id}/cancel", dependencies=[AdminDep])
def cancel_job(service: ServiceDep, job_id: JobId) -> JobView:
    """Cancel a queued or running job (admin token)."""
    _get(service, job_id)
    return _view(service.runner.cancel(job_id))


@router.post("/api/exec", dependencies=[AdminDep])
def exec_command(service: ServiceDep, body: ExecRequest, request: Request) -> ExecResponse:
    """Run a shell command on every selected node's worker; logged (admin token)."""
    if not body.command.strip():
        raise HTTPException(400, "empty command")
    if not 0 < body.timeout <= 24 * 3600:
        raise HTTPException(400, "timeout must be between 0 and 86400 seconds")
    try:
        client = service.client()
    except BrambleError as exc:
        raise HTTPException(503, str(exc)) from exc
    submitter = _authenticated(request)
    start = time.monotonic()
    exec_id = service.store.log_exec(
        submitter, body.command, [body.nodes or "*"], body.timeout, time.time()
    )
    try:
        results = run_exec(client, body.command, body.nodes, body.timeout)
    except ExecError as exc:
        service.store.finish_exec(exec_id, time.monotonic() - start, {"error": {"msg": str(exc)}})
        raise HTTPException(400, str(exc)) from exc
    duration = time.monotonic() - start
    service.store.finish_exec(
        exec_id, duration, {r.node: r.model_dump(exclude={"node"}) for r in results}
    )
    log.info("exec %d by %s on %d nodes: %r", exec_id, submitter, len(results), body.command)
    return ExecResponse(id=exec_id, command=body.command, duration=duration, results=results)


@router.get("/api/execs", dependencies=[AdminDep])
def list_execs(
    service: ServiceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[ExecRecord]:
    """The exec log with each node's output, newest first (admin token)."""
    return service.store.execs(limit)
