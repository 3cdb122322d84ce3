"""`bramble master`, assembled in one place: every part created here, started in order and
closed in reverse by the app's lifespan.

    history (blocks in SQLite)  ->  its writer thread  ->  its reader  ->  the silences  ->  the
        live view's tasks  ->  the notifier and the Alertmanager push  ->  the collector on the
        telemetry socket  ->  the jobs service

The node table, the live view (with its event hub), the collector and the app are plain
objects made in `Master.__init__`, which opens nothing; the lifespan opens files, sockets and
processes, and closes each of them even when a later one fails to start. Shutdown is clean and
bounded because every part closes: the HTTP server gives event streams 2 s, then the parts
close in reverse (the jobs service cancels what runs, the collector stops receiving, history
writes what it holds in memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import signal
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI

from bramble import __version__
from bramble.errors import BrambleError
from bramble.jobs.gate import REVOKED_FILE
from bramble.master import api, limits, prometheus
from bramble.master.address import check_listen
from bramble.master.alertmanager import AlertmanagerPush
from bramble.master.alerts import Alerts, rules
from bramble.master.collector import Collector, Stats, open_socket
from bramble.master.health import Health
from bramble.master.history import History, HistoryWriter
from bramble.master.history_reader import HistoryReader
from bramble.master.live import Live
from bramble.master.migrate import migrate
from bramble.master.nodes import NodeTable
from bramble.master.notifier import Notifier
from bramble.master.replay import ReplayStore
from bramble.master.silences import Silences
from bramble.master.views import Change
from bramble.trust import api as trust_api
from bramble.trust import https
from bramble.trust.certs import Ca
from bramble.trust.leases import read_leases
from bramble.trust.policy import JoinToken
from bramble.trust.service import Enrollment
from bramble.trust.store import TrustStore

if TYPE_CHECKING:
    import uvicorn

    from bramble.cluster import Cluster
    from bramble.jobs.api import JobsService
    from bramble.jobs.liveness import WorkerFollower
    from bramble.spec import Secrets

log = logging.getLogger(__name__)
HTTP_GRACE = 2  # seconds event streams get to end when the master stops


class Master:
    """Everything the master runs, for CLUSTER, with its history in DB_PATH.

    TELEMETRY opens the socket the collector receives on (by default the spec's group and
    port); JOBS, whether to run the jobs service.
    """

    def __init__(
        self,
        cluster: Cluster,
        db_path: Path,
        *,
        telemetry: Callable[[], socket.socket] | None = None,
        jobs: bool = True,
    ) -> None:
        spec = cluster.spec
        secrets = cluster.secrets()
        tel, hist = spec.telemetry, spec.history
        self.cluster = cluster
        self.telemetry = telemetry or (lambda: open_socket(str(tel.group), tel.port, tel.interface))
        self.run_jobs = jobs
        self.lock = threading.Lock()
        self.health = Health()
        self.table = NodeTable(
            stale_after=tel.stale_after,
            down_after=tel.down_after,
            max_nodes=tel.max_nodes,
            default_interval=tel.interval,
            admit=frozenset(n.name for n in spec.nodes) if tel.admit == "spec" else None,
        )
        self.history = History(
            db_path,
            raw_hours=hist.raw_hours,
            minute_days=hist.minute_days,
            hour_days=hist.hour_days,
            max_bytes=hist.max_bytes,
            max_changes=hist.max_changes,
        )
        self.writer = HistoryWriter(
            self.history, flush_seconds=hist.flush_seconds, health=self.health
        )
        self.reader = HistoryReader(db_path, self.history.keep, self.history)
        self.replay = ReplayStore(db_path.with_name("replay.windows"))
        self.counts = Stats()
        self.silences = Silences(db_path.with_name("silences.json"))
        self.live = Live(
            self.table,
            self.lock,
            self.counts,
            self.writer,
            self.reader,
            health=self.health,
            replay=self.replay,
            alerts=Alerts(rules(spec), master=spec.master.name),
            silences=self.silences,
        )
        self.notifier = Notifier(spec.alerting, cluster.master_url, self.silences, self.health)
        self.live.alert_listeners.append(self.notifier.alerts)
        self.alertmanager = AlertmanagerPush(
            spec.alerting.alertmanagers,
            cluster.master_url,
            self.live.alert_views,
            self.health,
            timeout=spec.alerting.timeout,
        )
        self.live.alert_listeners.append(self.alertmanager.alerts)
        self.collector = Collector(
            self.table,
            self.lock,
            keys={secrets.telemetry_key_id: secrets.telemetry_key},
            allow_unsigned=tel.allow_unsigned,
            clock_window=tel.clock_window,
            on_changes=self.live.on_changes,
            stats=self.counts,
            health=self.health,
            on_sample=self.live.on_sample,
        )
        self.shared_key = {secrets.telemetry_key_id: secrets.telemetry_key}
        self.spec_names = frozenset(n.name for n in spec.nodes) if tel.admit == "spec" else None
        lease_file = Path(spec.enroll.lease_file)
        self.ca = _read_ca(cluster)  # signs the workers' and the enrollment port's certificates
        self.trust = TrustStore(db_path.with_name("trust.db"))
        self.revoked_path = db_path.with_name(REVOKED_FILE)  # the scheduler reads it
        self.enrollment = Enrollment(
            spec,
            _join_tokens(secrets),
            self.trust,
            leases=lambda now: read_leases(lease_file, now),
            ca=self.ca,
            spec_macs=_spec_macs(cluster),
        )
        self.follower: WorkerFollower | None = None  # with the jobs service, if it follows
        self.app = create_app(self)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        """Open and start every part in order; close them in reverse when the app stops."""
        async with contextlib.AsyncExitStack() as parts:
            try:
                self.history.open()
                migrate(self.history)  # history from before blocks, converted once
            except (OSError, sqlite3.Error) as exc:  # live data serves without it; reported
                self.health.failed("history", exc, self.history.path)
            parts.callback(self.history.close)
            self.writer.start()
            parts.callback(self.writer.close)
            try:
                self.reader.open()
            except (OSError, sqlite3.Error) as exc:
                self.health.failed("history", exc, self.history.path)
            parts.callback(self.reader.close)
            # the dashboard's cluster charts read once now, off the loop, so the first viewer
            # finds their blocks decoded (bench/RESULTS.md: cold and warm chart times)
            warming = threading.Thread(target=self.reader.warm, name="bramble-warm", daemon=True)
            warming.start()
            parts.callback(warming.join, 10)
            try:
                self.replay.open()
            except (OSError, sqlite3.Error) as exc:
                self.health.failed("history", exc, self.replay.path)
                self.live.replay = None
            parts.callback(self.replay.close)
            try:
                self.trust.open()
                self.use_credentials()
            except (OSError, sqlite3.Error) as exc:  # the shared key still works; reported
                self.health.failed("history", exc, self.trust.path)
            parts.callback(self.trust.close)
            try:
                known = self.reader.last_kinds()
            except (OSError, sqlite3.Error):
                known = {}  # the history cannot be read: health says so; nodes are new
            with self.lock:
                self.table.known = known
            self.silences.load()
            self.live.start()
            parts.push_async_callback(self.live.close)
            self.notifier.start()
            parts.push_async_callback(self.notifier.close)
            self.alertmanager.start()
            parts.push_async_callback(self.alertmanager.close)
            await self.collector.start(self.telemetry())
            parts.callback(self.collector.close)
            if self.run_jobs:
                await self._start_jobs(app, parts)
            yield

    def use_credentials(self) -> None:
        """Give the collector the enrolled nodes' keys (and the shared key until it is
        retired), and admit the enrolled nodes' names (on the event loop)."""
        creds = self.enrollment.credentials()
        try:  # the scheduler refuses these certificates from its next connection on
            self.enrollment.write_revocations(self.revoked_path)
        except (OSError, sqlite3.Error) as exc:
            self.health.failed("history", exc, self.revoked_path)
        keys = {**(self.shared_key if creds.shared else {}), **creds.keys}
        self.collector.use_keys(keys, creds.owners, creds.revoked)
        if self.spec_names is not None:
            with self.lock:
                self.table.admit = self.spec_names | frozenset(creds.owners.values())
        if creds.expires is not None:  # a rotated-out key ends: drop it then
            with contextlib.suppress(RuntimeError):  # no loop: the next change does it
                loop = asyncio.get_running_loop()
                loop.call_later(max(0.0, creds.expires - time.time()) + 0.1, self.use_credentials)

    def trust_changed(self, changes: list[Change], credentials: bool) -> None:
        """Enrollment's news: CHANGES to show; CREDENTIALS, whether the keys changed."""
        if changes:
            self.live.on_changes(changes)
        if credentials:
            self.use_credentials()

    async def _start_jobs(self, app: FastAPI, parts: contextlib.AsyncExitStack) -> None:
        """The jobs service, if it can run here: without it the master serves the rest, and
        the jobs routes say why not."""
        from bramble.jobs.api import create_service

        try:
            service = await asyncio.to_thread(create_service, self.cluster)
        except (BrambleError, OSError) as exc:
            log.warning("jobs are not available: %s", exc)
            app.state.jobs_error = str(exc)
            self.health.failed("jobs", f"not available: {exc}")
            return
        app.state.jobs = service

        async def close() -> None:
            del app.state.jobs
            await asyncio.to_thread(service.close)

        parts.push_async_callback(close)
        if self.cluster.spec.jobs.remove_down_workers:
            self._follow_liveness(service, parts)

    def _follow_liveness(self, service: JobsService, parts: contextlib.AsyncExitStack) -> None:
        """A node down here loses its Dask worker at once (`jobs.liveness`)."""
        from bramble.jobs.liveness import DaskScheduler, WorkerFollower

        follower = WorkerFollower(DaskScheduler(service.client))
        follower.start()
        self.live.listeners.append(follower.changes)
        self.follower = follower

        def close() -> None:
            self.live.listeners.remove(follower.changes)
            follower.close()

        parts.callback(close)

    async def serve(self, bind: str, port: int) -> None:
        """Serve on BIND:PORT until SIGTERM or SIGINT, the parts running for as long."""
        import uvicorn

        if (warning := limits.few_files(limits.raise_open_files())) is not None:
            log.warning("%s", warning)
        logging.getLogger("uvicorn.error").addFilter(limits.QuietStalls())
        spec = self.cluster.spec
        names = {spec.master.name, spec.fqdn(spec.master.name), "localhost"}
        names |= {socket.gethostname(), socket.getfqdn()}
        config = uvicorn.Config(
            limits.HostCheck(limits.BodyLimit(self.app), names),
            host=bind,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",  # the lifespan is run here, around the server
            timeout_graceful_shutdown=HTTP_GRACE,
            http=limits.protocol_with_header_timeout(),
            backlog=4096,
        )
        server = uvicorn.Server(config)
        enrolling = self._enroll_server(bind, names)

        def _stop(_signum: int, _frame: object) -> None:
            # uvicorn takes over these signals while it serves and raises them again when it
            # has stopped; before and after that, this ends the serving.
            server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _stop)
        tel = self.cluster.spec.telemetry
        async with self.app.router.lifespan_context(self.app):
            log.info(
                "bramble master: dashboard http://%s:%d/ telemetry %s:%d",
                bind,
                port,
                tel.group,
                tel.port,
            )
            task = asyncio.create_task(enrolling[0].serve([enrolling[1]])) if enrolling else None
            try:
                await server.serve()
            finally:
                if enrolling is not None and task is not None:
                    enrolling[0].should_exit = True
                    await task
                    enrolling[1].close()
        if not server.started:
            raise BrambleError(f"cannot start the master: could not serve HTTP on {bind}:{port}")

    def _enroll_server(
        self, bind: str, names: set[str]
    ) -> tuple[uvicorn.Server, socket.socket] | None:
        """The HTTPS server for enrollment on BIND and the spec's enrollment port, its
        certificate signed by the cluster CA now; None (enrollment is off, and said so)
        without the CA key."""
        import uvicorn

        spec = self.cluster.spec
        port = spec.enroll_port
        if self.ca is None:
            log.warning(
                "enrollment is off: no cluster CA key in %s (`bramble init` makes it)",
                self.cluster.tls.directory,
            )
            return None
        hosts = https.server_hosts(spec)
        cert, key = https.server_certificate(self.ca, hosts, datetime.datetime.now(datetime.UTC))
        config = uvicorn.Config(
            limits.HostCheck(limits.BodyLimit(enroll_app(self)), names),
            host=bind,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=HTTP_GRACE,
            http=limits.protocol_with_header_timeout(),
        )
        with https.server_files(cert, key) as files:  # read into the context, then gone
            config.ssl_certfile, config.ssl_keyfile = f"{files}/cert.pem", f"{files}/key.pem"
            config.load()
        assert config.ssl is not None
        config.ssl.minimum_version = ssl.TLSVersion.TLSv1_2
        sock = socket.socket(socket.AF_INET6 if ":" in bind else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind, port))
            sock.listen(128)  # boards asking before the server runs wait in the backlog
        except OSError as exc:
            sock.close()
            raise BrambleError(
                f"cannot start the master: cannot serve enrollment (HTTPS) on {bind}:{port}: "
                f"{exc.strerror} (set enroll.port in the spec)"
            ) from None
        sock.set_inheritable(True)
        log.info("enrollment: https://%s:%d/api/enroll for %s", bind, port, ", ".join(hosts))
        return _quiet_server(config), sock


def _quiet_server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that leaves the signals to the main server (which stops it)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

        def install_signal_handlers(self) -> None:  # uvicorn before 0.29's capture
            pass

    return Server(config)


def enroll_app(master: Master) -> FastAPI:
    """The master's enrollment app, served over HTTPS: `POST /api/enroll` and the due check."""
    app = FastAPI(
        title="bramble enrollment",
        version=__version__,
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(trust_api.enroll_router(master.enrollment, master.trust_changed))
    return app


def create_app(master: Master) -> FastAPI:
    """The master's HTTP app: the API, /metrics, the jobs API, the software the nodes install
    (/dist/) and the dashboard page."""
    from bramble.jobs.api import router as jobs_router
    from bramble.software.api import software_router

    app = FastAPI(
        title="bramble master",
        version=__version__,
        description="Live node table, history and events of a bramble cluster.",
        lifespan=master.lifespan,
    )
    app.include_router(api.router(master.live, master.reader))
    app.include_router(api.silences_router(master.silences, master.cluster.secrets().admin_token))
    app.include_router(prometheus.router(master.live))
    app.include_router(jobs_router)
    app.include_router(
        trust_api.router(
            master.enrollment, master.cluster.secrets().admin_token, master.trust_changed
        )
    )
    app.include_router(trust_api.plain_enroll_router(_plain_enroll_reason(master)))
    app.include_router(software_router(Path(master.cluster.spec.software.wheels_dir)))
    api.mount_page(app)
    return app


def run_master(cluster: Cluster, *, bind: str | None, port: int | None, db: Path | None) -> None:
    """`bramble master`: serve CLUSTER until stopped."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    spec = cluster.spec
    db_path = db or Path(spec.history.path)
    host, http_port = bind or spec.dashboard_bind, port or spec.dashboard.port
    check_listen(host, http_port, _bind_source(cluster, bind))
    master = Master(cluster, db_path)
    loop = _new_loop()
    try:
        loop.run_until_complete(master.serve(host, http_port))
    except OSError as exc:
        raise BrambleError(
            f"cannot start the master: {exc} (is another master using port "
            f"{spec.telemetry.port}, or is {db_path.parent} writable?)"
        ) from None
    finally:
        loop.close()


def _join_tokens(secrets: Secrets) -> list[JoinToken]:
    """The join tokens the master accepts: the current one, and the one before the last
    rotation until its overlap ends."""
    tokens = [JoinToken(secrets.join_token)] if secrets.join_token else []
    if secrets.join_previous:
        tokens.append(JoinToken(secrets.join_previous, secrets.join_previous_until))
    return tokens


def _spec_macs(cluster: Cluster) -> Callable[[], dict[str, str]]:
    """The spec's MACs for enrollment, read again when the spec file changes."""
    last: list[tuple[float, dict[str, str]]] = []

    def macs() -> dict[str, str]:
        try:
            mtime = cluster.path.stat().st_mtime if cluster.path is not None else 0.0
        except OSError:
            mtime = 0.0
        if not last or last[0][0] != mtime:
            last[:] = [(mtime, cluster.spec_macs())]
        return last[0][1]

    return macs


def _read_ca(cluster: Cluster) -> Ca | None:
    """The cluster CA beside the spec, to sign the nodes' worker certificates; None if the
    CA key is not there (the nodes then enroll without one)."""
    paths = cluster.tls
    try:
        return Ca(paths.ca_cert.read_text(), paths.ca_key.read_text())
    except OSError:
        return None


def _plain_enroll_reason(master: Master) -> str:
    """Why `POST /api/enroll` on the plain HTTP port is refused, and where to enroll."""
    from bramble.provision.render import enroll_url

    if master.ca is None:
        return (
            f"this master does not enroll boards: no cluster CA key in "
            f"{master.cluster.tls.directory} (`bramble init` makes it)"
        )
    return (
        f"boards enroll over HTTPS only, at {enroll_url(master.cluster.spec)}/api/enroll "
        "(render the node image again: its join.toml names it)"
    )


def _bind_source(cluster: Cluster, bind: str | None) -> str:
    """Where the dashboard's address came from, for an error that says what to change."""
    where = cluster.path or "the spec"
    if bind:
        return "--bind"
    if cluster.spec.dashboard.bind:
        return f"dashboard.bind in {where}"
    return f"network.master_address in {where}, as dashboard.bind is empty"


def _new_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where installed (much cheaper per viewer), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
