"""The jobs API router served over HTTP (uvicorn on an ephemeral port) with a real cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from bramble_testing import LocalCluster, free_port
from fastapi import FastAPI

from bramble.jobs.api import JobsService, router

pytestmark = pytest.mark.slow
TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture()
def api(cluster: LocalCluster, jobs_dir: Path) -> Iterator[tuple[str, JobsService]]:
    port = free_port()
    service = JobsService(cluster.config(jobs_dir, f"http://127.0.0.1:{port}"), TOKEN)
    app = FastAPI()
    app.include_router(router)
    app.state.jobs = service
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        service.close()
        server.should_exit = True
        thread.join(10)


def wait_final(base: str, job_id: int, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{base}/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return dict(job)
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_submit_needs_admin_token(api: tuple[str, JobsService]) -> None:
    base, service = api
    body = {"file": "pi.py", "args": ["1000", "2"]}
    assert httpx.post(f"{base}/api/jobs", json=body).status_code == 401
    bad = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{base}/api/jobs", json=body, headers=bad).status_code == 401
    assert httpx.post(f"{base}/api/exec", json={"command": "true"}).status_code == 401
    assert httpx.post(f"{base}/api/jobs/1/cancel").status_code == 401
    assert service.store.list_jobs() == []


def test_submit_list_logs_and_cancel(api: tuple[str, JobsService]) -> None:
    base, _ = api
    resp = httpx.post(
        f"{base}/api/jobs",
        json={"file": "primes.py", "args": ["100000", "4"], "submitter": "me@laptop"},  # ignored
        headers=AUTH,
    )
    assert resp.status_code == 201, resp.text
    job_id = resp.json()["id"]
    job = wait_final(base, job_id)
    assert job["state"] == "done" and job["exit_status"] == 0
    assert job["submitter"] == "admin@127.0.0.1"
    assert httpx.get(f"{base}/api/jobs/{job_id}/logs").status_code == 401
    logs = httpx.get(f"{base}/api/jobs/{job_id}/logs", headers=AUTH).json()
    assert logs["finished"]
    assert "result: 9592" in "".join(c["data"] for c in logs["chunks"])
    params = {"after": logs["next"]}
    later = httpx.get(f"{base}/api/jobs/{job_id}/logs", params=params, headers=AUTH).json()
    assert later["chunks"] == []
    assert [j["id"] for j in httpx.get(f"{base}/api/jobs").json()] == [job_id]

    long = httpx.post(
        f"{base}/api/jobs", json={"file": "sleepy.py", "args": ["100", "1"]}, headers=AUTH
    ).json()
    time.sleep(1.0)
    cancelled = httpx.post(f"{base}/api/jobs/{long['id']}/cancel", headers=AUTH).json()
    assert cancelled["state"] == "cancelled"
    assert wait_final(base, long["id"])["state"] == "cancelled"

    assert httpx.get(f"{base}/api/jobs/9999").status_code == 404
    missing = httpx.post(f"{base}/api/jobs", json={"file": "nope.py"}, headers=AUTH)
    assert missing.status_code == 400 and "no such job file" in missing.json()["detail"]


def test_exec_and_its_log(api: tuple[str, JobsService]) -> None:
    base, _ = api
    resp = httpx.post(
        f"{base}/api/exec",
        json={"command": "echo hello", "timeout": 10, "submitter": "me"},
        headers=AUTH,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    results = resp.json()["results"]
    assert {"node-1", "node-2"} <= {r["node"] for r in results}
    assert all(r["rc"] == 0 and r["output"] == "hello\n" for r in results)
    assert httpx.get(f"{base}/api/execs").status_code == 401
    log = httpx.get(f"{base}/api/execs", headers=AUTH).json()
    assert log[0]["command"] == "echo hello" and log[0]["submitter"] == "admin@127.0.0.1"
    assert {"node-1", "node-2"} <= set(log[0]["results"])
    bad = httpx.post(f"{base}/api/exec", json={"command": "true", "nodes": "gpu-*"}, headers=AUTH)
    assert bad.status_code == 400 and "no live worker" in bad.json()["detail"]


def test_cluster_view(api: tuple[str, JobsService]) -> None:
    base, service = api
    view = httpx.get(f"{base}/api/jobs/cluster", timeout=30).json()
    assert view["error"] is None
    assert {"node-1", "node-2"} <= {w["name"] for w in view["workers"]}
    assert all(w["nthreads"] == 2 for w in view["workers"])
    # The panel's link leads to Dask's own dashboard, served by the scheduler with bokeh.
    pytest.importorskip(
        "bokeh", reason="Dask's dashboard needs bokeh (bramble-cluster[dask-dashboard])"
    )
    assert view["dashboard_url"] == service.config.dashboard_url
    page = httpx.get(view["dashboard_url"], timeout=30, follow_redirects=True)
    assert page.status_code == 200 and "Dask" in page.text


def test_unreachable_scheduler_is_remembered_not_retried_per_request(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    import dataclasses
    import socket

    from bramble.jobs.dask import SchedulerUnreachableError

    port = free_port()
    config = dataclasses.replace(cluster.config(tmp_path), scheduler=f"tls://127.0.0.1:{port}")
    service = JobsService(config, TOKEN)
    try:
        with pytest.raises(SchedulerUnreachableError, match="refused") as first:
            service.client()
        # Something now listens there, but within RETRY_AFTER the failure is answered from
        # memory: no new connection attempt, no request thread held for a connect timeout.
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", port))
            listener.listen()
            with pytest.raises(SchedulerUnreachableError) as second:
                service.client()
            assert str(second.value) == str(first.value)
            listener.settimeout(0.2)
            with pytest.raises(TimeoutError):
                listener.accept()
    finally:
        service.close()
