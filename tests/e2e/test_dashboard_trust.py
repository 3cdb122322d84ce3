"""Boards waiting to enroll on the dashboard (Debian's chromium through Playwright): the page
says that boards wait, lists them once given the admin token (the same one the alerts'
silence button keeps), and the admin approves one, which then enrolls over HTTPS, and
refuses another, whose key is refused from then on."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, wait_for

from bramble.trust.node import EnrollError, NodeIdentity, enroll

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SPEC_MAC = "02:b7:00:00:00:01"  # node-1 of the spec, but with no lease: it waits
STRANGER = "02:00:00:00:00:0b"


def _board(tmp_path: Path, master: Master, name: str) -> Path:
    board = tmp_path / name
    (board / "tls").mkdir(parents=True)
    (board / "join.toml").write_text(
        f'[join]\nmaster = "{master.enroll_base}"\ntoken = "{master.secrets.join_token}"\n'
    )
    shutil.copy(master.ca_file, board / "tls" / "ca.pem")
    return board


def _pending(master: Master) -> list[str]:
    admin = {"Authorization": f"Bearer {master.secrets.admin_token}"}
    rows = httpx.get(master.base + "/api/trust/pending", headers=admin, timeout=5).json()
    return sorted(r["mac"] for r in rows)


def test_approve_and_refuse_from_the_dashboard(
    start_master: Callable[..., Master], browser: object, tmp_path: Path
) -> None:
    leases = tmp_path / "dnsmasq.leases"
    leases.write_text("")
    master = start_master(
        nodes=2,
        tls=True,
        tables={"enroll": f'lease_file = "{leases}"\nper_minute = 10000'},
    )
    found: list[NodeIdentity] = []
    stop = threading.Event()

    def ask() -> None:  # a board that asks until it is enrolled, as `bramble enroll` does
        def pause(_: float) -> None:
            if stop.wait(0.3):
                raise SystemExit

        found.append(enroll(_board(tmp_path, master, "one"), SPEC_MAC, sleep=pause))

    asking = threading.Thread(target=ask, daemon=True)
    asking.start()
    stranger = _board(tmp_path, master, "stranger")
    with pytest.raises(EnrollError, match="not enrolled"):
        enroll(stranger, STRANGER, attempts=1)
    wait_for(lambda: _pending(master) == sorted([SPEC_MAC, STRANGER]), 10, "two waiting")
    try:
        errors: list[str] = []
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: errors.append(str(e)))
        told: list[str] = []
        answers = ["not-the-token", master.secrets.admin_token]

        def dialog(d: object) -> None:
            told.append(d.message)  # type: ignore[attr-defined]
            if d.type == "prompt":  # type: ignore[attr-defined]
                d.accept(answers.pop(0))  # type: ignore[attr-defined]
            else:
                d.accept()  # type: ignore[attr-defined]

        page.on("dialog", dialog)
        page.goto(master.base + "/")
        # without the token the page only says that boards wait (the events are public)
        page.wait_for_selector("#enrolling:visible", timeout=10_000)
        assert page.inner_text("#enrolling").startswith("2 boards waiting to enroll")
        assert page.locator("#enrolling .trust-request").count() == 0

        page.click("#enrolling button.trust-review")
        # Playwright hands the page's dialogs to the handler only while it is called
        wait_for(lambda: page.wait_for_timeout(50) or "That is not the admin token." in told, 5,
                 "the refusal")  # fmt: skip
        page.click("#enrolling button.trust-review")
        page.wait_for_selector(".trust-request", timeout=10_000)
        rows = page.locator("#enrolling .trust-request")
        assert rows.count() == 2
        mine = page.locator(f".trust-request[data-mac='{SPEC_MAC}']")
        assert mine.locator("input.trust-name").input_value() == "node-1"

        mine.locator("button.trust-approve").click()
        wait_for(lambda: found, 15, "the board enrolled")
        assert found[0].name == "node-1"
        admin = {"Authorization": f"Bearer {master.secrets.admin_token}"}
        nodes = httpx.get(master.base + "/api/trust/nodes", headers=admin, timeout=5).json()
        assert [(n["name"], n["mac"]) for n in nodes] == [("node-1", SPEC_MAC)]

        page.locator(f".trust-request[data-mac='{STRANGER}'] button.trust-refuse").click()
        page.wait_for_selector("#enrolling", state="hidden", timeout=10_000)
        assert _pending(master) == []
        with pytest.raises(EnrollError, match="refused by the admin"):
            enroll(stranger, STRANGER, attempts=1)
        # the token given here is the one the alerts' silence button uses: kept for the tab
        assert page.evaluate("sessionStorage.getItem('bramble-admin-token')") == (
            master.secrets.admin_token
        )
        assert errors == []
    finally:
        stop.set()
        asking.join(10)
