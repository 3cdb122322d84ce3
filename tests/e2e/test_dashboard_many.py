"""The dashboard for many nodes, in a real browser (Debian's chromium through Playwright) against
a real master fed by real UDP heartbeats: the compact view (200 nodes on one 1920x1080 screen,
coloured by thresholds, alert badges, remembered), the compare chart, select-to-zoom and exact
from/to ranges, and a node's filesystems, processes, disk I/O and swap in its detail view."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from bramble_testing import Master, Sender, sample_body, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
HOT = '[[alerts]]\nname = "hot"\nmetric = "cputemp"\nthreshold = 85\nfor = "0.5s"\n'
ANY = {"telemetry": 'admit = "any"'}
# Screenshots go to docs/ (for the README) with UPDATE_SCREENSHOTS=1, else to the test's tmp dir.
DOCS = Path(__file__).resolve().parents[2] / "docs"
FS = {"/": [32_000_000_000, 29_500_000_000, 2_500_000_000],
      "/boot/firmware": [500_000_000, 60_000_000, 440_000_000]}  # fmt: skip

# cells (or any elements) wholly inside the window, wide and tall enough to read
IN_VIEW = """(sel) => [...document.querySelectorAll(sel)].filter((c) => {
  const r = c.getBoundingClientRect();
  return r.width >= 60 && r.height >= 20 && r.top >= 0 && r.left >= 0 &&
    r.bottom <= innerHeight && r.right <= innerWidth;
}).length"""


class Fleet:
    """N nodes (node-1 .. node-N) heartbeating to MASTER once a second from one thread, each
    with the fields of `fields[name]`; a node in `quiet` sends nothing."""

    def __init__(self, master: Master, n: int, interval: float = 1.0) -> None:
        self.master, self.n, self.interval = master, n, interval
        self.fields: dict[str, dict[str, Any]] = {}
        self.quiet: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        seq = 0
        while True:
            seq += 1
            for i in range(1, self.n + 1):
                name = f"node-{i}"
                if name in self.quiet:
                    continue
                extra = dict(self.fields.get(name, {}))
                grow = extra.pop("grow", None)
                if grow:  # counters since boot that go up at a steady rate
                    extra.update({k: [v * seq for v in per] for k, per in grow.items()})
                body = sample_body(name, seq, interval=self.interval, **extra)
                self.master.send(body)
            if self.stop.wait(self.interval):
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def _page(browser: Any, url: str, errors: list[str], **viewport: int) -> Any:
    page = browser.new_page(viewport=viewport or {"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page


def test_compact_view_shows_200_nodes_on_one_screen(
    start_master: Callable[..., Master], browser: Any, tmp_path: Path
) -> None:
    master = start_master(nodes=1, interval=1.0, extra=HOT, tables=ANY)
    fleet = Fleet(master, 200)
    fleet.fields["node-7"] = {"cputemp": 88.0}  # red, and the "hot" rule fires
    fleet.fields["node-8"] = {"cpuusage": 0.8}  # amber by CPU, green by memory
    try:
        errors: list[str] = []
        page = _page(browser, master.base + "/", errors, width=1920, height=1080)
        page.wait_for_function("document.querySelectorAll('.card').length === 200", timeout=30_000)
        assert page.locator("#compact").is_hidden()
        page.click(".view-switch button[data-view=compact]")
        page.wait_for_function("document.querySelectorAll('.cell.up').length === 200")
        assert page.locator("#grid").is_hidden()
        assert page.evaluate(IN_VIEW, ".cell") == 200, "not every node is on the screen"
        assert page.evaluate("scrollY") == 0
        # a cell reads: name, then CPU %, °C, memory %
        cell = page.locator(".cell[data-name='node-3']")
        assert cell.locator(".cn").inner_text() == "node-3"
        assert cell.locator(".cv").inner_text() == "25% 46° 50%"

        def classes(name: str) -> str:
            return str(page.get_attribute(f".cell[data-name='{name}']", "class"))

        assert "l0" in classes("node-3").split()
        page.wait_for_function(
            "document.querySelector(\".cell[data-name='node-7']\").classList.contains('l2')"
        )
        assert "l1" in classes("node-8").split()
        page.select_option("#colour-by", "mem")
        assert "l0" in classes("node-8").split() and "l0" in classes("node-7").split()
        page.select_option("#colour-by", "worst")

        # the alert: a badge on the cell, the banner as in the cards view
        page.wait_for_selector(".cell[data-name='node-7'] .ab:visible", timeout=15_000)
        assert page.locator(".cell .ab:visible").count() == 1
        assert "alerting" in classes("node-7").split()
        page.hover(".cell[data-name='node-7']")
        title = page.get_attribute(".cell[data-name='node-7']", "title") or ""
        assert "alert: warning hot (cputemp > 85)" in title and "88.0 °C" in title

        # a node that goes quiet turns stale, then down, in its cell
        fleet.quiet.add("node-9")
        page.wait_for_selector(".cell.stale[data-name='node-9']", timeout=15_000)
        page.mouse.move(0, 0)
        shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
        page.screenshot(path=str(shots / "compact-desktop.png"))
        # the filters apply to the cells too
        page.select_option("#status-filter", "problem")
        wait_for(lambda: page.locator(".cell:visible").count() == 2, 5, "the problem cells")
        assert sorted(page.locator(".cell:visible .cn").all_inner_texts()) == ["node-7", "node-9"]
        page.select_option("#status-filter", "")

        # remembered across loads; the cards view comes back with every node up to date
        page.reload()
        page.wait_for_function("document.querySelectorAll('.cell').length === 200")
        assert page.get_attribute(".view-switch [data-view=compact]", "aria-pressed") == "true"
        assert page.locator(".card").count() == 0  # cards are made only when shown
        page.click(".view-switch button[data-view=cards]")
        page.wait_for_function("document.querySelectorAll('.card').length === 200")
        assert page.locator("#compact").is_hidden()
        assert page.locator(".card[data-name='node-7'] .badge.alert").is_visible()
        page.reload()
        page.wait_for_function("document.querySelectorAll('.card').length === 200")
        assert page.locator(".cell").count() == 0

        # on a phone the cells wrap: nothing scrolls sideways
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.on("pageerror", lambda e: errors.append(str(e)))
        phone.add_init_script("localStorage.setItem('bramble-view', 'compact')")
        phone.goto(master.base + "/")
        phone.wait_for_function("document.querySelectorAll('.cell').length === 200")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the compact view scrolls sideways on a phone ({width} px)"
        assert phone.evaluate(IN_VIEW, ".cell") >= 40
        phone.close()
        assert errors == []
    finally:
        fleet.close()


def _scale(page: Any, box: str) -> tuple[float, float]:
    lo, hi = page.evaluate(f"[document.querySelector('{box}').chart.scales.x.min,"
                           f" document.querySelector('{box}').chart.scales.x.max]")  # fmt: skip
    return float(lo), float(hi)


def _drag(page: Any, box: str, start: float, end: float) -> None:
    """Drag across chart BOX from START to END (fractions of its plot's width)."""
    area = page.locator(f"{box} .u-over").bounding_box()
    y = area["y"] + area["height"] / 2
    page.mouse.move(area["x"] + area["width"] * start, y)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * (start + end) / 2, y, steps=4)
    page.mouse.move(area["x"] + area["width"] * end, y, steps=4)
    page.mouse.up()


def _local(ts: float) -> str:
    """Epoch seconds as a datetime-local input's value (the browser runs in our time zone)."""
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%dT%H:%M:%S")


def test_compare_chart_zoom_and_exact_ranges(
    start_master: Callable[..., Master], browser: Any
) -> None:
    master = start_master(nodes=3, interval=0.3, tables={"history": "flush_seconds = 1"})
    senders = [Sender(master, f"node-{i}", 0.3) for i in (1, 2, 3)]
    for sender, temp in zip(senders, (41.0, 63.5, 52.0), strict=True):
        sender.temp = temp
    try:
        errors: list[str] = []
        asked: list[str] = []
        page = _page(browser, master.base + "/", errors)
        page.on("request", lambda r: asked.append(r.url) if "/history" in r.url else None)
        page.wait_for_function("document.querySelectorAll('.card.up').length === 3")
        time.sleep(2)  # a few seconds of history

        # compare: node-1 and node-3 on one chart, by temperature
        page.click("#compare summary")
        page.wait_for_selector("#cmp-metric option[value=cputemp]", state="attached")
        page.select_option("#cmp-metric", "cputemp")
        page.check(".cmp-node input[value='node-1']")
        page.check(".cmp-node input[value='node-3']")
        last = """() => { const u = document.querySelector('#cmp-chart').chart;
          if (!u || u.series.length !== 3) return null;
          const lastOf = (col) => col.filter((v) => v != null).pop();
          const got = [lastOf(u.data[1]), lastOf(u.data[2])];
          if (got.some((v) => v == null)) return null;
          return [u.series[1].label, u.series[2].label, ...got];
        }"""
        got = page.wait_for_function(last, timeout=15_000).json_value()
        assert got == ["node-1", "node-3", 41.0, 52.0]
        assert page.inner_text(".cmp-controls .shown") == "2 of at most 12 chosen"
        # remembered: the panel opens again with the same choice
        page.reload()
        page.click("#compare summary")
        page.wait_for_selector(".cmp-node input[value='node-3']:checked")
        assert page.is_checked(".cmp-node input[value='node-1']")
        assert not page.is_checked(".cmp-node input[value='node-2']")
        assert page.input_value("#cmp-metric") == "cputemp"
        page.wait_for_function(last, timeout=15_000)

        # select-to-zoom on the compare chart: the range narrows, is fetched with until, resets
        lo, hi = _scale(page, "#cmp-chart")
        assert hi - lo == pytest.approx(3600, abs=5)
        asked.clear()
        _drag(page, "#cmp-chart", 0.5, 0.9)
        page.wait_for_function(
            "(() => { const s = document.querySelector('#cmp-chart').chart.scales.x;"
            " return s.max - s.min < 2000; })()"
        )
        zlo, zhi = _scale(page, "#cmp-chart")
        assert lo + 0.45 * 3600 < zlo < zhi < lo + 0.95 * 3600
        wait_for(lambda: any("until=" in u and "cputemp" in u for u in asked), 5, "a zoomed fetch")
        range_box = page.locator("#compare .range-row")
        assert "zoomed" in (range_box.get_attribute("class") or "")
        assert range_box.locator("input").nth(0).input_value() == _local(zlo)
        range_box.locator("button.reset").click()
        page.wait_for_function(
            "(() => { const s = document.querySelector('#cmp-chart').chart.scales.x;"
            " return s.max - s.min > 3500; })()"
        )

        # the cluster charts zoom the same way
        page.wait_for_selector("#c-cpu .u-over")
        _drag(page, "#c-cpu", 0.2, 0.4)
        page.wait_for_function(
            "(() => { const s = document.querySelector('#c-cpu').chart.scales.x;"
            " return s.max - s.min < 1000; })()"
        )
        assert _scale(page, "#c-mem") == _scale(page, "#c-cpu")  # one range for both
        page.click("#c-range button.reset")
        page.wait_for_function(
            "(() => { const s = document.querySelector('#c-cpu').chart.scales.x;"
            " return s.max - s.min > 3500; })()"
        )

        # exact range in the detail view: from 12 s to 4 s ago, to the second
        page.goto(master.base + "/#/node/node-2")
        page.wait_for_selector("#d-cpu canvas")
        page.wait_for_function(
            "document.querySelector('#d-temp').chart.data[0][0] < Date.now() / 1000 - 13"
        )
        now = time.time()
        frm, to = int(now - 12), int(now - 4)
        page.fill("#d-range input >> nth=0", _local(frm))
        page.fill("#d-range input >> nth=1", _local(to))
        page.click("#d-range button.apply")
        page.wait_for_function(
            f"document.querySelector('#d-cpu').chart.scales.x.min === {frm}", timeout=10_000
        )
        for chart in ("#d-cpu", "#d-temp", "#d-mem", "#d-load", "#d-net", "#d-disk", "#d-swap"):
            assert _scale(page, chart) == (frm, to), chart
        times = page.evaluate("document.querySelector('#d-temp').chart.data[0]")
        assert len(times) >= 5 and all(frm - 1 <= t <= to for t in times), times
        assert page.locator(".ranges button[aria-pressed=true]").count() == 0
        # a 'to' before 'from' is refused, and says so
        page.fill("#d-range input >> nth=1", _local(frm - 60))
        page.click("#d-range button.apply")
        assert (
            page.evaluate("document.querySelectorAll('#d-range input')[1].validity.valid") is False
        )
        assert _scale(page, "#d-cpu") == (frm, to)
        # dragging zooms further in, every chart together
        _drag(page, "#d-temp", 0.25, 0.75)
        page.wait_for_function(
            f"document.querySelector('#d-cpu').chart.scales.x.min > {frm + 1}", timeout=10_000
        )
        zlo, zhi = _scale(page, "#d-cpu")
        assert frm + 1 < zlo < zhi < to - 1
        assert _scale(page, "#d-net") == _scale(page, "#d-cpu")
        page.click("#d-range button.reset")
        page.wait_for_function(
            "(() => { const s = document.querySelector('#d-cpu').chart.scales.x;"
            " return Math.abs(s.max - s.min - 900) < 2; })()"
        )
        assert page.get_attribute(".ranges button[data-range='900']", "aria-pressed") == "true"
        assert errors == []
    finally:
        for sender in senders:
            sender.close()


def test_detail_shows_filesystems_processes_disk_io_and_swap(
    start_master: Callable[..., Master], browser: Any
) -> None:
    master = start_master(nodes=2, interval=0.5)
    fleet = Fleet(master, 2, interval=0.5)
    # node-1 reads 2,000 bytes and writes 6,000 per interval (0.5 s), swaps 3 pages in, 5 out
    fleet.fields["node-1"] = {"fs": FS, "grow": {"diskio": [2000, 6000], "swap": [3, 5]}}
    try:
        errors: list[str] = []
        page = _page(browser, master.base + "/", errors)
        page.wait_for_function("document.querySelectorAll('.card.up').length === 2")
        time.sleep(3)  # some seconds of disk I/O and swap before the detail opens
        page.click(".card[data-name='node-1']")
        page.wait_for_selector("#d-cpu canvas")

        # disk I/O and swap, from what the page saw: rates of the counters
        rates = """(id) => { const u = document.querySelector(id).chart;
          const vals = (i) => u.data[i].filter((v) => v != null);
          return vals(1).length >= 4 ? [vals(1).pop(), vals(2).pop()] : null; }"""
        # (the rates are over the samples' own times: 0.5 s give or take the sender's lag)
        disk = page.wait_for_function(rates, arg="#d-disk").json_value()
        assert disk == [pytest.approx(4000, rel=0.1), pytest.approx(12000, rel=0.1)]
        swap = page.wait_for_function(rates, arg="#d-swap").json_value()
        assert swap == [pytest.approx(6, rel=0.1), pytest.approx(10, rel=0.1)]
        assert page.locator("#d-disk-none").is_hidden()
        # disk I/O arrived on this page from before the detail opened (the last 3 s)
        first = page.evaluate("document.querySelector('#d-disk').chart.data[0][0]")
        assert first < time.time() - 2

        # filesystems: a row each, fullest marked
        rows = page.locator("#d-fs tbody tr").all_inner_texts()
        assert [[c.strip() for c in r.split("\t")] for r in rows] == [
            ["/", "32.0 GB", "29.5 GB", "2.5 GB", "92%"],
            ["/boot/firmware", "500 MB", "60.0 MB", "440 MB", "12%"],
        ]
        assert "full" in (page.get_attribute("#d-fs tbody tr >> nth=0 >> .usebar", "class") or "")

        # no process list from this node (this master has none to give)
        page.wait_for_selector("#d-procs-none:visible")
        assert page.inner_text("#d-procs-none") == "no process list from this node yet"
        assert page.locator("#d-procs").is_hidden()

        # a node without these signals says so rather than drawing zeros
        page.goto(master.base + "/#/node/node-2")
        page.wait_for_selector("#d-disk-none:visible")
        assert page.inner_text("#d-disk-none") == (
            "no disk I/O from this node (its heartbeats carry none)"
        )
        assert page.locator("#d-swap-none").is_visible()
        assert page.locator("#d-fs-none").is_visible()
        assert errors == []
    finally:
        fleet.close()


def test_detail_lists_top_processes(start_master: Callable[..., Master], browser: Any) -> None:
    """The top processes table from `/api/nodes/{name}/processes`, in the shape that route
    answers (`{"ts", "processes": [{"name", "pid", "cpu", "rss"}]}`, rss in bytes). Where this
    master does not serve it yet, the browser is given that answer (only that route)."""
    import json

    master = start_master(nodes=1, interval=0.5)
    fleet = Fleet(master, 1, interval=0.5)
    try:
        errors: list[str] = []
        page = _new(browser, errors)
        served = "/api/nodes/{name}/processes" in master.api("/api/routes")
        answer = {"ts": time.time() - 5, "processes": [
            {"name": "python3", "pid": 812, "cpu": 97.5, "rss": 52_428_800},
            {"name": "sshd", "pid": 433, "cpu": 0.2, "rss": 7_340_032},
        ]}  # fmt: skip
        if not served:
            routes = [*master.api("/api/routes"), "/api/nodes/{name}/processes"]
            page.route("**/api/routes", lambda r: r.fulfill(json=routes))
            page.route("**/api/nodes/node-1/processes", lambda r: r.fulfill(body=json.dumps(answer),
                       content_type="application/json"))  # fmt: skip
        page.goto(master.base + "/#/node/node-1")
        if served:  # the master's own answer: what its node sent, or nothing yet
            page.wait_for_selector("#d-procs:visible, #d-procs-none:visible")
        else:
            page.wait_for_selector("#d-procs:visible")
            rows = page.locator("#d-procs tbody tr").all_inner_texts()
            assert [r.split("\t") for r in rows] == [
                ["python3", "812", "97.5%", "50 MiB"],
                ["sshd", "433", "0.2%", "7 MiB"],
            ]
            assert page.inner_text("#d-procs-when").startswith("(as of ")
            assert page.locator("#d-procs-none").is_hidden()
        assert errors == []
    finally:
        fleet.close()


def _new(browser: Any, errors: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page
