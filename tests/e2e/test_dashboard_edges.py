"""The dashboard's rough edges, measured in a real browser (Debian's chromium) against a real
master, agents, Dask scheduler and workers on loopback: axis labels that fit, no 0 °C line for
a missing sensor, a phone layout that does not scroll sideways, charts that span their hour,
labelled bars, workers in natural order and a plain message when the master is away."""

from __future__ import annotations

import importlib.util
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from bramble_testing import (
    JOB_EXAMPLES,
    Processes,
    api,
    free_port,
    give_to_job_user,
    wait_for,
    write_spec,
)

from bramble.spec import load_secrets, load_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-sync"]
NODES = ("node-1", "node-2", "node-10")

playwright_api = pytest.importorskip("playwright.sync_api")
if not shutil.which(CHROMIUM):
    pytest.skip("chromium is not installed (Debian package 'chromium')", allow_module_level=True)

# Every chart's axes as drawn: the labels, the widest label's width and the room the axis has.
AXES = """() => [...document.querySelectorAll('.chart')].filter((c) => c.chart).map((c) => {
  const u = c.chart;
  const ctx = document.createElement('canvas').getContext('2d');
  return { id: c.id, min: u.scales.x.min, max: u.scales.x.max, data: u.data.slice(1),
    axes: u.axes.map((ax) => {
      ctx.font = ax.font[0];
      const labels = (ax._values || []).map(String);
      const widest = Math.max(0, ...labels.map((l) => ctx.measureText(l).width)) / devicePixelRatio;
      return { labels, widest, room: ax._size - ax.ticks.size - ax.gap };
    }) };
})"""


@dataclass
class Stack:
    url: str
    processes: Processes
    spec_path: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A master with 3 agents, a Dask scheduler and workers node-1, node-2, node-10, one job."""
    root = tmp_path_factory.mktemp("edges")
    public = Path(tempfile.mkdtemp(prefix="bramble-test-"))  # jobs run as an unprivileged user
    public.chmod(0o755)
    jobs_dir = public / "jobs"
    shutil.copytree(JOB_EXAMPLES, jobs_dir)
    give_to_job_user(jobs_dir)
    jobs = (
        f'scheduler_port = {free_port()}\ndashboard_port = {free_port()}\njobs_dir = "{jobs_dir}"'
    )
    spec_path = write_spec(root / "c", nodes=10, interval=0.3)  # node-10 is in the spec
    spec_path.write_text(spec_path.read_text().replace("tls = false", f"tls = false\n{jobs}"))
    url = f"http://127.0.0.1:{load_spec(spec_path).dashboard.port}/"
    processes = Processes(root)
    try:
        processes.start("scheduler", "scheduler", "--spec", str(spec_path))
        processes.start("master", "master", "--spec", str(spec_path))
        for name in NODES:
            processes.start(name, "agent", "--spec", str(spec_path), "--node-name", name)
            processes.start(
                f"{name}.worker", "worker", "--spec", str(spec_path), "--name", name,
                "--host", "127.0.0.1", "--nthreads", "1", "--light",
            )  # fmt: skip
        wait_for(lambda: len(api(url, "api/nodes")) == 3, 30, "three nodes")
        wait_for(lambda: len(api(url, "api/jobs/cluster")["workers"]) == 3, 60, "three workers")
        token = load_secrets(spec_path).admin_token
        # a job with a long argument, as a path is: one long word in the jobs table
        out = jobs_dir / "mandelbrot-of-the-whole-cluster-at-a-small-size.pgm"
        job = httpx.post(
            url + "api/jobs",
            json={"file": "mandelbrot.py", "args": ["16", "12", str(out)]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        ).json()
        wait_for(lambda: api(url, f"api/jobs/{job['id']}")["state"] == "done", 60, "the job")
        yield Stack(url, processes, spec_path)
    finally:
        processes.stop_all()
        shutil.rmtree(public, ignore_errors=True)


@pytest.fixture
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def _overview(browser: Any, url: str, **viewport: int) -> Any:
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card.up').length === 3", timeout=20_000)
    page.wait_for_function("document.querySelectorAll('.bramble-jobs tbody tr').length >= 1")
    return page


def test_on_a_phone_nothing_scrolls_sideways_and_the_header_is_short(
    stack: Stack, browser: Any
) -> None:
    page = _overview(browser, stack.url, width=390, height=844)
    page.wait_for_selector("#c-mem canvas")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the page scrolls sideways on a phone ({width} px in 390)"
    header = page.evaluate("document.querySelector('.top').getBoundingClientRect().height")
    assert header <= 0.15 * 844, f"the header takes {header:.0f} px of 844"
    # and it scrolls away with the page rather than staying over it
    assert page.evaluate("getComputedStyle(document.querySelector('.top')).position") == "static"


def _axes(page: Any, ids: set[str]) -> list[dict[str, Any]]:
    def drawn() -> list[dict[str, Any]] | None:
        charts = [c for c in page.evaluate(AXES) if c["id"] in ids]
        ready = len(charts) == len(ids) and all(c["axes"][1]["labels"] for c in charts)
        return charts if ready else None

    return wait_for(drawn, 20, f"charts {sorted(ids)} drawn")  # type: ignore[no-any-return]


def test_every_axis_label_fits_its_axis(stack: Stack, browser: Any) -> None:
    page = _overview(browser, stack.url)
    charts = _axes(page, {"c-cpu", "c-mem"})
    page.goto(stack.url + "#/node/node-1")
    time.sleep(1)  # the detail's history arrives
    charts += _axes(page, {"d-cpu", "d-temp", "d-mem", "d-load", "d-net"})
    for chart in charts:
        y = chart["axes"][1]
        assert y["widest"] <= y["room"], (chart["id"], y)
        # memory in a unit that reads: 19.5 GiB, not 20000 MiB
        if chart["id"] in ("c-mem", "d-mem"):
            assert all(re.fullmatch(r"\d+(\.\d)? (MiB|GiB)", v) for v in y["labels"]), y


def test_the_cluster_charts_span_the_last_hour_from_the_start(stack: Stack, browser: Any) -> None:
    # seconds after a master starts its history holds a few points; the axis still shows the
    # hour up to now (one point alone made it span years: "Jun 2027 ... Jun 2029")
    page = _overview(browser, stack.url)
    now = time.time()
    for chart in _axes(page, {"c-cpu", "c-mem"}):
        assert chart["max"] - chart["min"] == pytest.approx(3600, abs=5), chart["id"]
        assert chart["max"] == pytest.approx(now, abs=60)
        assert not any(re.search(r"\b20\d\d\b", v) for v in chart["axes"][0]["labels"])


def test_a_missing_sensor_draws_no_temperature_line(stack: Stack, browser: Any) -> None:
    if any((n["sample"] or {}).get("cputemp") for n in api(stack.url, "api/nodes")):
        pytest.skip("this machine has a temperature sensor")
    page = _overview(browser, stack.url)
    page.goto(stack.url + "#/node/node-1")
    page.wait_for_selector("#d-temp-none:not([hidden])", timeout=20_000)
    assert page.inner_text("#d-temp-none") == "no temperature sensor on this node"
    [temp] = _axes(page, {"d-temp"})
    assert temp["data"] and all(v is None for v in temp["data"][0]), "a 0 °C line is drawn"
    card = page.locator('.card[data-name="node-1"]')
    page.goto(stack.url)
    assert card.locator(".v-temp").inner_text() == "\u2013"  # the dash of "no value"


def test_every_bar_says_what_it_measures(stack: Stack, browser: Any) -> None:
    page = _overview(browser, stack.url)
    page.wait_for_function("document.querySelectorAll('.busybar').length === 3")
    meters = page.evaluate(
        """() => [...document.querySelectorAll('[role=meter]')].map((m) => ({
          name: m.getAttribute('aria-label'), now: m.getAttribute('aria-valuenow'),
          label: m.parentElement.querySelector('.barlabel')?.innerText || '' }))"""
    )
    assert len(meters) == 3 + 3  # a memory bar per card, a busy bar per worker
    for meter in meters:
        assert meter["name"] and meter["now"] is not None and meter["label"], meter
    cores = page.evaluate(
        """() => [...document.querySelectorAll('.cores')].map((c) =>
          [c.getAttribute('aria-label'), c.parentElement.querySelector('.barlabel')?.innerText])"""
    )
    assert cores == [["CPU per core", "per core"]] * 3


def test_workers_are_listed_in_natural_order(stack: Stack, browser: Any) -> None:
    page = _overview(browser, stack.url)
    page.wait_for_function("document.querySelectorAll('.bramble-workers li').length === 3")
    items = page.locator(".bramble-workers li").all_inner_texts()
    assert [i.split(":")[0] for i in items] == ["node-1", "node-2", "node-10"]
    # the scheduler here has bokeh: the link to Dask's dashboard is there, and served
    link = page.locator("#jobs a", has_text="Dask dashboard")
    if importlib.util.find_spec("bokeh") is not None:
        assert httpx.get(str(link.get_attribute("href")), timeout=10).status_code == 200


def test_a_master_outage_reads_plainly_in_the_jobs_panel(tmp_path: Path, browser: Any) -> None:
    spec_path = write_spec(tmp_path / "c", nodes=1, interval=0.3)
    url = f"http://127.0.0.1:{load_spec(spec_path).dashboard.port}/"
    processes = Processes(tmp_path)
    try:
        processes.start("master", "master", "--spec", str(spec_path))
        processes.start("node-1", "agent", "--spec", str(spec_path), "--node-name", "node-1")
        wait_for(lambda: len(api(url, "api/nodes")) == 1, 30, "a node")
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        page.wait_for_selector("#jobs h2")
        processes.stop("master")
        page.wait_for_function(
            "document.querySelector('#jobs').innerText.includes('cannot reach the master')",
            timeout=15_000,
        )
        assert "TypeError" not in page.inner_text("#jobs")
    finally:
        processes.stop_all()
