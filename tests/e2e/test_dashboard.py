"""The dashboard in a real browser (Debian's chromium through Playwright) against a real master."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from bramble_testing import Processes, api, wait_for, write_spec

from bramble.spec import load_spec

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# Screenshots go to docs/ (for the README) with UPDATE_SCREENSHOTS=1, else to the test's tmp dir.
DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_dashboard_live_cards_staleness_and_detail(
    tmp_path: Path, processes: Processes, browser: object
) -> None:
    shots = DOCS if os.environ.get("UPDATE_SCREENSHOTS") else tmp_path
    spec_path = write_spec(
        tmp_path / "c",
        nodes=3,
        interval=0.3,
        stale_after=3,
        down_after=8,
        tables={"history": "flush_seconds = 1"},
    )
    port = load_spec(spec_path).dashboard.port
    url = f"http://127.0.0.1:{port}/"
    processes.start("master", "master", "--spec", str(spec_path))
    for i in (1, 2, 3):
        processes.start(f"node-{i}", "agent", "--spec", str(spec_path), "--node-name", f"node-{i}")

    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "response",
        lambda r: errors.append(f"HTTP {r.status} {r.url}") if r.status >= 500 else None,
    )
    wait_for(lambda: api(url, "api/stats"), 20, "the master to answer")
    page.goto(url)

    # one card per node, all up, with live values that change
    page.wait_for_function("document.querySelectorAll('.card.up').length === 3", timeout=20_000)
    assert page.locator(".card .name").all_inner_texts() == ["node-1", "node-2", "node-3"]
    assert page.inner_text("#s-up") == "3"
    first = page.locator(".card .vals").all_inner_texts()
    wait_for(lambda: page.locator(".card .vals").all_inner_texts() != first, 15, "values to change")
    assert page.locator(".card").first.locator(".cores i").count() >= 1
    # memory used of total, from the metrics the master computes for each node
    assert re.fullmatch(r"\d+(\.\d)? [MG]iB / \d+(\.\d)? [MG]iB", page.inner_text(".card .v-mem"))
    assert re.fullmatch(r"\d+(\.\d)? of \d+(\.\d)? [MG]iB", page.inner_text("#s-mem"))
    page.wait_for_function(
        "Number(document.querySelector('#s-rate').textContent.replace('/s','')) > 0"
    )
    # when history was last written to disk (every second here)
    page.wait_for_function("/^[0-3] s ago$/.test(document.querySelector('#s-saved').textContent)")
    page.wait_for_selector("#c-cpu canvas", timeout=20_000)
    time.sleep(1)
    page.screenshot(path=str(shots / "overview-desktop.png"))

    # filtering by status and by name
    page.select_option("#status-filter", "problem")
    assert page.locator(".card:visible").count() == 0
    page.select_option("#status-filter", "")
    page.fill("#filter", "node-2")
    assert page.locator(".card:visible .name").all_inner_texts() == ["node-2"]
    page.fill("#filter", "")

    # stop an agent: its card turns stale, then down, unmistakably
    processes.stop("node-2")
    card = page.locator('.card[data-name="node-2"]')
    page.wait_for_selector('.card.stale[data-name="node-2"]', timeout=10_000)
    assert card.locator(".badge").first.inner_text().lower() == "stale"
    assert "STALE" in card.locator(".seen").inner_text()
    page.wait_for_selector('.card.down[data-name="node-2"]', timeout=10_000)
    assert "DOWN" in card.locator(".seen").inner_text()
    assert page.inner_text("#s-down") == "1"
    assert "node-2" in page.inner_text("#events")

    # node detail: keyboard opens it, charts are drawn from the history API
    page.focus('.card[data-name="node-1"]')
    page.keyboard.press("Enter")
    page.wait_for_url("**/#/node/node-1")
    page.wait_for_selector("#d-cpu canvas")
    assert page.inner_text("#d-name") == "node-1"
    points = page.wait_for_function(
        "() => { const u = document.querySelector('#d-cpu .uplot');"
        " return u && document.querySelectorAll('#d-cpu canvas').length > 0 &&"
        " document.querySelector('#d-cpu canvas').width > 100; }",
        timeout=15_000,
    )
    assert points
    for chart in ("d-cpu", "d-temp", "d-mem", "d-load", "d-net"):
        box = page.locator(f"#{chart} canvas").bounding_box()
        assert box and box["width"] > 150 and box["height"] > 100
    page.click('.ranges button[data-range="3600"]')
    assert page.get_attribute('.ranges button[data-range="3600"]', "aria-pressed") == "true"
    time.sleep(1.5)
    page.screenshot(path=str(shots / "detail-desktop.png"))
    page.keyboard.press("Escape")
    page.wait_for_selector("#overview:not([hidden])")

    # phone size
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)  # type: ignore[attr-defined]
    phone.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    phone.on("pageerror", lambda e: errors.append(str(e)))
    phone.goto(url)
    phone.wait_for_function("document.querySelectorAll('.card').length === 3")
    time.sleep(1)
    phone.screenshot(path=str(shots / "overview-phone.png"))
    phone.goto(url + "#/node/node-1")
    phone.wait_for_selector("#d-cpu canvas")
    time.sleep(1.5)
    phone.screenshot(path=str(shots / "detail-phone.png"))
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the page scrolls sideways on a phone ({width} px)"
    phone.close()

    # the master goes away: the page says so and does not pass old numbers off as live
    before_stop = list(errors)
    processes.stop("master")
    page.wait_for_selector("#banner:not([hidden])", timeout=10_000)
    assert "retrying" in page.inner_text("#banner")
    assert page.evaluate("document.body.classList.contains('offline')")
    # and it comes back by itself
    processes.start("master", "master", "--spec", str(spec_path))
    page.wait_for_selector("#banner[hidden]", state="attached", timeout=20_000)
    assert not page.evaluate("document.body.classList.contains('offline')")
    assert before_stop == []
    # while the master goes away and is away, only cut or failed requests are expected
    later = errors[len(before_stop) :]
    assert all(
        "ERR_" in e or "Failed to load resource" in e or e.startswith("HTTP 500") for e in later
    ), later


def test_unsigned_nodes_and_a_failing_part_are_shown(
    tmp_path: Path, processes: Processes, browser: object
) -> None:
    import json
    import socket

    # history where no directory can be made (a file is in the way): history does not work
    (tmp_path / "a-file").write_text("")
    spec_path = write_spec(
        tmp_path / "c", nodes=1, interval=0.3,
        tables={
            "telemetry": 'allow_unsigned = true\nadmit = "any"',
            "history": f'path = "{tmp_path / "a-file" / "history.db"}"',
        },
    )  # fmt: skip
    spec = load_spec(spec_path)
    url = f"http://127.0.0.1:{spec.dashboard.port}/"
    processes.start("master", "master", "--spec", str(spec_path))
    processes.start("node-1", "agent", "--spec", str(spec_path), "--node-name", "node-1")
    wait_for(lambda: api(url, "api/stats"), 20, "the master to answer")
    legacy = {"cpufreq": 700, "cputemp": 47.1, "cpuusage": 0.1, "loadavg": [0.1, 0.1, 0.1],
              "meminfo": {"MemTotal": 448776, "MemFree": 253284}}  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.bind(("127.0.0.2", 0))  # no reverse name: the node is called by its address
        for _ in range(3):
            tx.sendto(json.dumps(legacy).encode(), ("127.0.0.1", spec.telemetry.port))
            time.sleep(0.2)
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('.card').length === 2", timeout=20_000)
    legacy_card = page.locator(".card[data-name='127.0.0.2']")
    assert legacy_card.locator(".badge.unsigned").is_visible()
    assert not page.locator(".card[data-name='node-1'] .badge.unsigned").is_visible()
    page.wait_for_selector("#trouble:not([hidden])", timeout=10_000)
    assert page.inner_text("#trouble").startswith("master: history: ")
