"""Which notifications to send, and when, the way Alertmanager decides it; and their payload,
Alertmanager's webhook JSON. Pure: the current time is passed in.

Alerts are grouped by rule (`alertname`): twelve hot nodes are one notification, not twelve.
A group's first notification waits `group_wait` after its first alert (so alerts that come
together are told together); after that the group is looked at every `group_interval`, and
notified only if what fires changed (an alert fired or resolved) or, with the same alerts
still firing, once `repeat_interval` has passed since the last notification. So a group is
never notified more than once per interval, however much its alerts flap. Silenced alerts are
left out; an alert is told resolved only if it was told firing.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bramble.master.views import AlertView

MAX_ALERTS = 1000
"""Alerts in one notification at most; the rest are counted (`truncatedAlerts`)."""
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class Notification:
    """What to tell the receivers about one group."""

    group: str
    firing: tuple[AlertView, ...]
    resolved: tuple[AlertView, ...]

    @property
    def status(self) -> str:
        """'firing' while any alert of it fires, else 'resolved' (Alertmanager's words)."""
        return "firing" if self.firing else "resolved"


@dataclass(slots=True)
class _Group:
    key: str
    next_flush: float
    alerts: dict[str, AlertView] = field(default_factory=dict)  # by fingerprint, latest view
    told_firing: frozenset[str] = frozenset()
    last_sent: float | None = None


class Dispatcher:
    """The groups of alerts waiting to be told, and when each is due."""

    def __init__(self, *, group_wait: float, group_interval: float,
                 repeat_interval: float) -> None:  # fmt: skip
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self._groups: dict[str, _Group] = {}
        # when each group was last told, also once it is gone: a group that comes back waits
        # for the rest of its interval too
        self._last_sent: dict[str, float] = {}

    def add(self, alerts: Iterable[AlertView], now: float) -> None:
        """Alerts that fired or resolved at NOW."""
        for alert in alerts:
            group = self._groups.get(alert.rule)
            if group is None:
                if alert.state != "firing":
                    continue  # resolved, and never told: nothing to say
                last = self._last_sent.get(alert.rule, -self.group_interval)
                flush = max(now + self.group_wait, last + self.group_interval)
                group = self._groups[alert.rule] = _Group(alert.rule, flush)
            group.alerts[alert.fingerprint] = alert

    def due(
        self, now: float, silenced: Callable[[AlertView], bool] = lambda _a: False
    ) -> list[Notification]:
        """The notifications due at NOW (each group's at its flush time), as sent."""
        out = []
        for key in list(self._groups):
            group = self._groups[key]
            if now < group.next_flush:
                continue
            # the next look a whole interval on from this one, however late it came
            group.next_flush = now + self.group_interval
            notification = self._flush(group, now, silenced)
            if notification is not None:
                out.append(notification)
            if not group.alerts:
                del self._groups[key]
        return out

    def _flush(
        self, group: _Group, now: float, silenced: Callable[[AlertView], bool]
    ) -> Notification | None:
        firing = tuple(a for a in group.alerts.values() if a.state == "firing" and not silenced(a))
        resolved = tuple(
            a
            for a in group.alerts.values()
            if a.state == "resolved" and a.fingerprint in group.told_firing
        )
        for alert in [a for a in group.alerts.values() if a.state == "resolved"]:
            del group.alerts[alert.fingerprint]  # told now, or never to be told
        now_firing = frozenset(a.fingerprint for a in firing)
        changed = now_firing != group.told_firing or bool(resolved)
        repeat = (
            bool(firing)
            and group.last_sent is not None
            and now - group.last_sent >= self.repeat_interval
        )
        if not (changed or repeat) or not (firing or resolved):
            group.told_firing = now_firing
            return None
        group.told_firing = now_firing
        group.last_sent = self._last_sent[group.key] = now
        return Notification(group.key, firing, resolved)

    def next_due(self) -> float | None:
        """When the next group is due to be looked at, if any."""
        return min((g.next_flush for g in self._groups.values()), default=None)

    def pending(self) -> int:
        """Groups with alerts waiting or being watched."""
        return len(self._groups)


def _time(epoch: float | None) -> str:
    if epoch is None:
        return ZERO_TIME
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_json(
    alert: AlertView, status: str, base: str, ends: float | None = None
) -> dict[str, Any]:
    """ALERT as Alertmanager's alert object (in its webhooks, and its API's alerts); ENDS,
    when a firing alert is to be taken as resolved if not sent again (for its API)."""
    annotations = {"summary": alert.summary, "condition": alert.condition}
    if alert.value is not None:
        annotations["value"] = f"{alert.value:g}"
    return {
        "status": status,
        "labels": alert.labels,
        "annotations": annotations,
        "startsAt": _time(alert.fired_at or alert.active_at),
        "endsAt": _time(alert.resolved_at if status == "resolved" else ends),
        "generatorURL": f"{base}/api/alerts",
        "fingerprint": alert.fingerprint,
    }


def _common(items: list[dict[str, str]]) -> dict[str, str]:
    if not items:
        return {}
    common = dict(items[0])
    for item in items[1:]:
        common = {k: v for k, v in common.items() if item.get(k) == v}
    return common


def webhook_payload(notification: Notification, base: str) -> dict[str, Any]:
    """NOTIFICATION as Alertmanager's webhook JSON (version 4), from the master at BASE."""
    alerts = [alert_json(a, "firing", base) for a in notification.firing]
    alerts += [alert_json(a, "resolved", base) for a in notification.resolved]
    kept = alerts[:MAX_ALERTS]
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{notification.group}"}}',
        "truncatedAlerts": len(alerts) - len(kept),
        "status": notification.status,
        "receiver": "bramble",
        "groupLabels": {"alertname": notification.group},
        "commonLabels": _common([a["labels"] for a in kept]),
        "commonAnnotations": _common([a["annotations"] for a in kept]),
        "externalURL": base + "/",
        "alerts": kept,
    }
