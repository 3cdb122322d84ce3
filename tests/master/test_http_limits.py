"""Requests that try to exhaust the master: huge bodies, idle event streams, half-sent
requests, long polls, out-of-range ids and foreign Host headers. Nobody needs a token to try,
so each is bounded before it costs the master memory, descriptors or threads."""

from __future__ import annotations

import contextlib
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, read_status, wait_for

pytestmark = [pytest.mark.slow]

MB = 1 << 20


@pytest.fixture
def descriptors() -> Iterator[None]:
    """Room for thousands of client sockets in this process; a master started meanwhile
    gets systemd's default soft limit of 1,024, as the rendered unit would without a limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 8192:
        pytest.skip(f"the hard limit on open files is {hard}; the test needs 8,192")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def more_descriptors() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))


def connect_many(master: Master, count: int, request: bytes) -> list[socket.socket]:
    """COUNT connections to the master, each having sent REQUEST and reading nothing."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", master.spec.dashboard.port))
            sock.sendall(request)
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    return socks


def served(master: Master, timeout: float = 2.0) -> bool:
    """Whether another client gets the node table within TIMEOUT seconds."""
    try:
        return httpx.get(master.base + "/api/nodes", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_huge_body_is_refused_before_it_is_read(start_master: Callable[..., Master]) -> None:
    master = start_master()
    assert httpx.get(master.base + "/api/jobs", timeout=30).status_code == 200  # jobs are up
    before = read_status(master.pid, "VmHWM")

    def body() -> Iterator[bytes]:  # {"file": "aaa...a"}, 200 MB
        yield b'{"file": "'
        chunk = b"a" * MB
        for _ in range(200):
            yield chunk
        yield b'"}'

    headers = {"Content-Type": "application/json", "Content-Length": str(200 * MB + 12)}
    status = None
    with contextlib.suppress(httpx.TransportError):  # the master may close mid-upload
        status = httpx.post(
            master.base + "/api/jobs", content=body(), headers=headers, timeout=60
        ).status_code
    assert status in (None, 401, 413)
    assert served(master)
    grown = read_status(master.pid, "VmHWM") - before
    assert grown < 20 * 1024, f"peak memory grew by {grown} kB"


def test_idle_event_streams_do_not_starve_other_clients(
    start_master: Callable[..., Master], descriptors: None
) -> None:
    master = start_master()
    more_descriptors()
    request = f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{master.spec.dashboard.port}\r\n\r\n"
    socks = connect_many(master, 2000, request.encode())
    try:
        assert len(socks) > 1500
        time.sleep(1)
        assert all(served(master) for _ in range(5))
    finally:
        for sock in socks:
            sock.close()


def test_half_sent_requests_are_closed_by_the_header_timeout(
    start_master: Callable[..., Master], descriptors: None
) -> None:
    master = start_master()
    more_descriptors()
    socks = connect_many(master, 2000, b"GET /api/nodes HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")
    try:
        assert len(socks) > 1500
        assert served(master)

        def closed(sock: socket.socket) -> bool:
            sock.settimeout(0.001)
            try:
                return sock.recv(4096) == b"" or True  # an answer (408) then close is fine
            except TimeoutError:
                return False
            except OSError:
                return True

        open_socks = list(socks)
        deadline = time.monotonic() + 30
        while open_socks and time.monotonic() < deadline:
            open_socks = [s for s in open_socks if not closed(s)]
            time.sleep(0.5)
        assert not open_socks, f"{len(open_socks)} half-sent requests still open after 30 s"
    finally:
        for sock in socks:
            sock.close()


LONG_JOB = "import time\nprint('started', flush=True)\ntime.sleep(120)\n"


def test_long_polls_do_not_hold_up_other_routes(
    start_master: Callable[..., Master], public_tmp: Path
) -> None:
    jobs = public_tmp / "jobs"
    jobs.mkdir(mode=0o755)
    (jobs / "long.py").write_text(LONG_JOB)
    master = start_master(tables={"jobs": f'jobs_dir = "{jobs}"'})
    auth = {"Authorization": f"Bearer {master.secrets.admin_token}"}
    submitted = httpx.post(
        master.base + "/api/jobs", json={"file": "long.py"}, headers=auth, timeout=30
    )
    assert submitted.status_code == 201, submitted.text
    job = submitted.json()["id"]
    logs = f"{master.base}/api/jobs/{job}/logs"
    first = wait_for(
        lambda: httpx.get(logs, headers=auth, timeout=5).json()["chunks"], 30, "the job's output"
    )
    after = first[-1]["seq"]

    def poll() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(logs, params={"after": after, "wait": 30}, headers=auth, timeout=40)

    pollers = [threading.Thread(target=poll, daemon=True) for _ in range(60)]
    try:
        for poller in pollers:
            poller.start()
        time.sleep(2)
        assert all(served(master) for _ in range(3))
    finally:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(f"{master.base}/api/jobs/{job}/cancel", headers=auth, timeout=40)
        for poller in pollers:
            poller.join(45)


def test_out_of_range_ids_are_422(start_master: Callable[..., Master]) -> None:
    master = start_master()
    auth = {"Authorization": f"Bearer {master.secrets.admin_token}"}
    for big in (2**63, 10**30):
        assert httpx.get(f"{master.base}/api/jobs/{big}", timeout=30).status_code == 422
        assert httpx.get(f"{master.base}/api/jobs/{big}/logs", headers=auth).status_code == 422
        cancel = httpx.post(f"{master.base}/api/jobs/{big}/cancel", headers=auth, timeout=10)
        assert cancel.status_code == 422
    assert httpx.get(f"{master.base}/api/jobs/{2**63 - 1}", timeout=10).status_code == 404


def test_a_foreign_host_header_is_refused(start_master: Callable[..., Master]) -> None:
    master = start_master()
    port = master.spec.dashboard.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", f"master.cluster:{port}"):
        response = httpx.get(master.base + "/api/nodes", headers={"Host": host}, timeout=5)
        assert response.status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"127.0.0.1.evil.example:{port}"):
        response = httpx.get(master.base + "/api/nodes", headers={"Host": host}, timeout=5)
        assert response.status_code in (400, 421), host
