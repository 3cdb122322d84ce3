"""Firing alerts on the dashboard (Debian's chromium through Playwright): a banner, and a badge
on the card of each node that has any; both go when the alert resolves. Silencing one from the
banner asks for the admin token once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from bramble_testing import Master, Sender, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]
RULE = '[[alerts]]\nname = "hot"\nmetric = "cputemp"\nthreshold = 70\nfor = "0.5s"\n'


def test_banner_and_badges_of_firing_alerts(
    start_master: Callable[..., Master], browser: object
) -> None:
    master = start_master(nodes=2, interval=0.2, extra=RULE)
    nodes = [Sender(master, f"node-{i}", 0.2) for i in (1, 2)]
    try:
        errors: list[str] = []
        page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(master.base + "/")
        page.wait_for_function("document.querySelectorAll('.card.up').length === 2")
        assert page.locator("#alerts").is_hidden()
        assert page.locator(".card .badge.alert:visible").count() == 0

        nodes[1].temp = 88.0
        page.wait_for_selector("#alerts:visible", timeout=10_000)
        assert page.inner_text("#alerts").startswith("1 alert firing: hot on node-2 (cputemp > 70)")
        badge = page.locator(".card[data-name='node-2'] .badge.alert")
        assert badge.is_visible() and badge.inner_text().lower() == "hot"
        assert page.locator(".card[data-name='node-1'] .badge.alert").is_hidden()
        page.select_option("#status-filter", "problem")  # an alerting node is a problem
        assert page.locator(".card:visible .name").all_inner_texts() == ["node-2"]
        page.select_option("#status-filter", "")

        page.reload()  # a new viewer gets the firing alerts in its snapshot
        page.wait_for_selector("#alerts:visible", timeout=10_000)
        assert page.locator(".card[data-name='node-2'] .badge.alert").is_visible()

        nodes[1].temp = 40.0
        page.wait_for_selector("#alerts", state="hidden", timeout=10_000)
        assert page.locator(".card .badge.alert:visible").count() == 0

        # silence from the banner: a wrong token is refused, the right one is asked once
        nodes[0].temp = 90.0
        page.wait_for_selector("#alerts:visible", timeout=10_000)
        answers = ["not-the-token", master.secrets.admin_token]
        told: list[str] = []

        def dialog(d: object) -> None:
            told.append(d.message)  # type: ignore[attr-defined]
            if d.type == "prompt":  # type: ignore[attr-defined]
                d.accept(answers.pop(0))  # type: ignore[attr-defined]
            else:
                d.accept()  # type: ignore[attr-defined]

        page.on("dialog", dialog)
        page.click("#alerts button.silence")
        # Playwright hands over dialogs only inside its own calls: wait in one, not in sleep
        wait_for(
            lambda: page.wait_for_timeout(50) or "That is not the admin token." in told,
            5,
            "the refusal",
        )
        page.click("#alerts button.silence")
        page.wait_for_selector("#alerts", state="hidden", timeout=10_000)
        badge = page.locator(".card[data-name='node-1'] .badge.alert")
        assert badge.is_visible() and "silenced" in (badge.get_attribute("class") or "")
        (made,) = master.api("/api/silences")
        assert (made["rule"], made["node"], made["comment"]) == (
            "hot",
            "node-1",
            "from the dashboard",
        )
        assert errors == []
    finally:
        for node in nodes:
            node.close()
