"""Alerts pushed to Alertmanagers the user already runs, the way Prometheus pushes them: each
change at once, and every alert firing or lately resolved again every minute, to
`/api/v2/alerts`. A firing alert is sent with an end four minutes on, so an Alertmanager that
stops hearing from the master (the master is gone) resolves it by itself.

Grouping, repeats, routing and silencing are the Alertmanager's: bramble's own silences apply
to its webhooks and command, not to what it pushes here. A push that fails is reported
(`/api/health`, part `notifier`) and repaired by the next minute's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bramble.master.health import Health
from bramble.master.notify import alert_json
from bramble.master.views import AlertView

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
RESEND = 60.0
"""Seconds between pushes of every alert (Prometheus's `resend_delay`)."""
VALID_FOR = 4 * RESEND
"""Seconds a pushed firing alert lasts in an Alertmanager that hears nothing more."""
PATH = "/api/v2/alerts"


def payload(alerts: list[AlertView], base: str, now: float) -> list[dict[str, object]]:
    """ALERTS as the body of Alertmanager's `POST /api/v2/alerts`; pending ones left out."""
    return [
        {k: v for k, v in alert_json(a, a.state, base, now + VALID_FOR).items()
         if k in ("labels", "annotations", "startsAt", "endsAt", "generatorURL")}
        for a in alerts
        if a.state != "pending"
    ]  # fmt: skip


class AlertmanagerPush:
    """Pushes to the Alertmanagers at URLS (base URLs); CURRENT gives every alert now."""

    def __init__(
        self,
        urls: list[str],
        base: str,
        current: Callable[[], list[AlertView]],
        health: Health,
        *,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.urls = [u.rstrip("/") + PATH for u in urls]
        self.base = base.rstrip("/")
        self.current = current
        self.health = health
        self.timeout = timeout
        self.clock = clock
        self.pushed = 0
        self._changed: list[AlertView] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: httpx.AsyncClient | None = None

    def alerts(self, told: list[AlertView]) -> None:
        """Alerts that fired or resolved (on the loop; returns at once)."""
        if self.urls:
            self._changed.extend(told)
            self._wake.set()

    def start(self) -> None:
        """Push on the running loop."""
        if self.urls:
            import httpx

            self._http = httpx.AsyncClient(timeout=self.timeout)
            self._task = asyncio.create_task(self._loop(), name="alertmanager")

    async def close(self) -> None:
        """Stop pushing."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _loop(self) -> None:
        every_at = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, every_at - self.clock()))
            self._wake.clear()
            now = self.clock()
            if now >= every_at:
                every_at = now + RESEND
                batch = self.current()
            else:
                batch = self._changed
            self._changed = []
            body = payload(batch, self.base, now)
            if body:
                await self._push(json.dumps(body).encode())

    async def _push(self, body: bytes) -> None:
        assert self._http is not None
        results = await asyncio.gather(
            *(self._http.post(url, content=body, headers={"Content-Type": "application/json"})
              for url in self.urls),
            return_exceptions=True,
        )  # fmt: skip
        for url, result in zip(self.urls, results, strict=True):
            if isinstance(result, asyncio.CancelledError):
                raise result
            if isinstance(result, BaseException):
                self.health.failed("notifier", result)
            elif result.status_code >= 300:
                self.health.failed("notifier", f"{url} answered HTTP {result.status_code}")
            else:
                self.pushed += 1
