"""The jobs panel's view of the Dask cluster, from a real master, scheduler and workers:
workers in natural order, and the link to Dask's dashboard only where it is served."""

from __future__ import annotations

from pathlib import Path

import pytest
from bramble_testing import Processes, api, free_port, wait_for, write_spec

from bramble.spec import load_spec

pytestmark = pytest.mark.slow


def _stack(
    tmp_path: Path,
    processes: Processes,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    *,
    bokeh: bool,
) -> str:
    jobs = f"scheduler_port = {free_port()}\ndashboard_port = {free_port()}"
    spec_path = write_spec(tmp_path / "c", nodes=1, extra="")
    text = spec_path.read_text().replace("tls = false", f"tls = false\n{jobs}")
    spec_path.write_text(text)
    if not bokeh:  # a scheduler where bokeh cannot be imported, as on a master without it
        # readable by the user `bramble` the scheduler becomes when started as root
        public = request.getfixturevalue("public_tmp")
        fake = public / "bokeh"
        fake.mkdir()
        (fake / "__init__.py").write_text("raise ImportError('no bokeh here')\n")
        monkeypatch.setenv("PYTHONPATH", str(public))
    processes.start("scheduler", "scheduler", "--spec", str(spec_path))
    monkeypatch.delenv("PYTHONPATH", raising=False)
    processes.start("master", "master", "--spec", str(spec_path))
    return f"http://127.0.0.1:{load_spec(spec_path).dashboard.port}"


def test_workers_are_in_natural_order_and_the_dashboard_link_is_served(
    tmp_path: Path,
    processes: Processes,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    pytest.importorskip("bokeh")
    base = _stack(tmp_path, processes, monkeypatch, request, bokeh=True)
    spec = str(tmp_path / "c" / "bramble.toml")
    for name in ("node-10", "node-2", "node-1"):
        processes.start(
            name, "worker", "--spec", spec, "--name", name, "--host", "127.0.0.1",
            "--nthreads", "1", "--light",
        )  # fmt: skip
    view = wait_for(
        lambda: (v := api(base, "/api/jobs/cluster")) and len(v["workers"]) == 3 and v,
        60,
        "three workers",
    )
    assert [w["name"] for w in view["workers"]] == ["node-1", "node-2", "node-10"]
    assert view["dashboard_url"] is not None
    assert view["dashboard_url"].endswith("/status")


def test_no_dashboard_link_where_the_scheduler_has_no_bokeh_or_is_down(
    tmp_path: Path,
    processes: Processes,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    base = _stack(tmp_path, processes, monkeypatch, request, bokeh=False)
    view = wait_for(
        lambda: (v := api(base, "/api/jobs/cluster")) and v["error"] is None and v,
        60,
        "the scheduler",
    )
    assert view["dashboard_url"] is None
    processes.stop("scheduler")
    view = wait_for(
        lambda: (v := api(base, "/api/jobs/cluster")) and v["error"] and v, 30, "no scheduler"
    )
    assert view["dashboard_url"] is None
