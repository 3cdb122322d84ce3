"""The notifier: a supervised loop on the master's event loop that sends the notifications
`notify.Dispatcher` says are due to every webhook (Alertmanager's webhook JSON, POSTed) and
to the command (the same JSON on its standard input).

A receiver that fails, hangs or answers with an error is reported (`/api/health`, part
`notifier`, logged rarely) and tried again, alone (the others have theirs), after 1, 2, 4 ...
seconds until the group's next interval; nothing a receiver does stops the loop or the
master.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bramble.master.health import Health
from bramble.master.notify import Dispatcher, Notification, webhook_payload
from bramble.master.silences import Silences
from bramble.master.views import AlertView
from bramble.spec.models import AlertingSpec

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
EVERY = 0.25
"""Seconds between looks at the groups at most (a group due sooner is looked at then)."""
MAX_SENDING = 16
"""Notifications being sent at once at most; more wait for the next look."""


class Notifier:
    """Notifications of the alerts told to `alerts`, sent to SPEC's receivers; BASE is the
    master's URL, for the payload's links."""

    def __init__(
        self,
        spec: AlertingSpec,
        base: str,
        silences: Silences,
        health: Health,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.base = base.rstrip("/")
        self.silences = silences
        self.health = health
        self.clock = clock
        self.dispatcher = Dispatcher(
            group_wait=spec.group_wait,
            group_interval=spec.group_interval,
            repeat_interval=spec.repeat_interval,
        )
        self.sent = 0
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._http: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()

    @property
    def receivers(self) -> bool:
        """Whether there is anyone to tell."""
        return bool(self.spec.webhooks or self.spec.command)

    def alerts(self, told: list[AlertView]) -> None:
        """Alerts that fired or resolved (on the loop; returns at once)."""
        if self.receivers:
            self.dispatcher.add(told, self.clock())
            self._wake.set()  # a new group may be due at once (group_wait 0)

    def start(self) -> None:
        """Look at the groups every EVERY seconds, on the running loop."""
        if self.receivers:
            import httpx  # only with receivers: 6 MiB the master otherwise does without

            self._http = httpx.AsyncClient(timeout=self.spec.timeout)
            self._task = asyncio.create_task(self._loop(), name="notifier")

    async def close(self) -> None:
        """Stop looking, cancel what is being sent."""
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def _loop(self) -> None:
        while True:
            # until the next group is due (at most EVERY), or new alerts come
            due = self.dispatcher.next_due()
            delay = EVERY if due is None else min(EVERY, max(0.0, due - self.clock()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            try:
                self._round()
            except Exception as exc:  # a bug here must not end the notifications
                self.health.failed("notifier", exc)

    def _round(self) -> None:
        if len(self._sending) >= MAX_SENDING:
            return
        now = self.clock()
        for notification in self.dispatcher.due(now, lambda a: self.silences.matches(a, now)):
            task = asyncio.create_task(self._send(notification))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, notification: Notification) -> None:
        payload = json.dumps(webhook_payload(notification, self.base)).encode()
        sends = [functools.partial(self._post, url, payload) for url in self.spec.webhooks]
        if self.spec.command:
            sends.append(functools.partial(self._run, payload))
        results = await asyncio.gather(*(self._retry(send) for send in sends))
        if all(results):
            self.sent += 1
            self.health.ok("notifier")
        log.info("notified %s: %s (%d firing, %d resolved), %d of %d receivers took it",
                 notification.group, notification.status, len(notification.firing),
                 len(notification.resolved), sum(results), len(results))  # fmt: skip

    async def _retry(self, send: Callable[[], Awaitable[None]]) -> bool:
        """SEND, again after 1, 2, 4 ... s while it fails, until the group's next interval;
        whether it went through."""
        give_up = time.monotonic() + max(self.spec.group_interval, 1.0)
        pause = 1.0
        while True:
            try:
                await send()
            except Exception as exc:
                self.health.failed("notifier", exc)
            else:
                return True
            if time.monotonic() + pause > give_up:
                return False
            await asyncio.sleep(pause)
            pause *= 2

    async def _post(self, url: str, payload: bytes) -> None:
        assert self._http is not None
        response = await self._http.post(
            url, content=payload, headers={"Content-Type": "application/json"}
        )
        if response.status_code >= 300:
            raise NotifyError(f"webhook {url} answered HTTP {response.status_code}")

    async def _run(self, payload: bytes) -> None:
        process = await asyncio.create_subprocess_exec(
            *self.spec.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            _out, err = await asyncio.wait_for(process.communicate(payload), self.spec.timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            tail = err.decode(errors="replace").strip()[-200:]
            raise NotifyError(f"command {self.spec.command[0]} exited {process.returncode}: {tail}")


class NotifyError(Exception):
    """A receiver did not take a notification."""
