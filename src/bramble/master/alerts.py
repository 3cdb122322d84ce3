"""Alerting rules and their state: one small state machine per rule and node. Pure: the
current time is passed in.

    inactive --condition holds--> pending --held for `for`--> firing --stops holding for
    `keep_firing_for`--> resolved (kept a while to be shown and told, then forgotten)

A pending alert whose condition stops holding is inactive again at once, so a condition that
flaps faster than `for` never fires; `keep_firing_for` keeps a firing alert from resolving and
firing again on every flap. A metric a node does not report (a board without a temperature
sensor) is absent, never 0, and an absent value holds no condition. When a node goes down its
metric alerts resolve, as Prometheus's do when their series go stale, and `node_down` fires
instead: one alert that says what is known.

The rules are the spec's built-in ones (`spec.models.BUILTIN_ALERTS`), changed or added to by
its `[[alerts]]` tables (`rules`).
"""

from __future__ import annotations

import fnmatch
import hashlib
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bramble.master.views import AlertState, AlertView
from bramble.spec.models import BUILTIN_ALERTS, AlertRuleSpec, Comparison, Severity, Spec
from bramble.telemetry.metrics import ABSENT_AT_ZERO, BY_NAME, read
from bramble.telemetry.wire import Sample

MASTER_METRICS = frozenset({"history_stopped"})
"""Signals of the master itself: their rules are evaluated once, for the master."""
KEEP_RESOLVED = 300.0
"""Seconds a resolved alert stays listed (and waits to be told) before it is forgotten."""

_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule, complete: built-in defaults filled in."""

    name: str
    metric: str
    op: Comparison
    threshold: float
    for_: float = 0.0
    keep_firing_for: float = 0.0
    severity: Severity = "warning"
    nodes: str = "*"
    summary: str = ""

    def applies_to(self, node: str) -> bool:
        """Whether this rule watches NODE."""
        return self.nodes == "*" or fnmatch.fnmatchcase(node, self.nodes)

    def holds(self, value: float) -> bool:
        """Whether VALUE meets the condition."""
        return _COMPARE[self.op](value, self.threshold)

    @property
    def condition(self) -> str:
        """The condition in words: 'cputemp > 80'."""
        return f"{self.metric} {self.op} {self.threshold:g}"


def rules(spec: Spec) -> tuple[Rule, ...]:
    """The rules SPEC turns on: the built-in ones (unless `[alerting] defaults = false`), each
    replaced by a `[[alerts]]` table of its name (which takes the keys it leaves out from it),
    then the spec's own; those with `enabled = false` left out. Assumes a validated spec."""
    builtin = {r.name: r for r in BUILTIN_ALERTS} if spec.alerting.defaults else {}
    every = {r.name: r for r in BUILTIN_ALERTS}
    chosen: dict[str, AlertRuleSpec] = dict(builtin)
    for rule in spec.alerts:
        base = every.get(rule.name)
        if base is not None:
            given = rule.model_dump(exclude_unset=True, by_alias=False)
            rule = base.model_copy(update=given)
        chosen[rule.name] = rule
    return tuple(_complete(r) for r in chosen.values() if r.enabled)


def _complete(rule: AlertRuleSpec) -> Rule:
    if rule.metric is None or rule.threshold is None:
        raise ValueError(f"rule {rule.name} has no metric or threshold")  # the spec checks it
    return Rule(
        name=rule.name,
        metric=rule.metric,
        op=rule.op or ">",
        threshold=rule.threshold,
        for_=rule.for_ or 0.0,
        keep_firing_for=rule.keep_firing_for or 0.0,
        severity=rule.severity or "warning",
        nodes=rule.nodes or "*",
        summary=rule.summary or "",
    )


def fingerprint(rule: str, node: str) -> str:
    """A short stable id of the alert of RULE on NODE."""
    return hashlib.sha256(f"{rule}\0{node}".encode()).hexdigest()[:16]


class _Alert:
    __slots__ = ("active_at", "fired_at", "last_held", "node", "resolved_at", "rule", "state",
                 "value")  # fmt: skip

    def __init__(self, rule: Rule, node: str, now: float, value: float) -> None:
        self.rule = rule
        self.node = node
        self.state: AlertState = "pending"
        self.active_at = now
        self.last_held = now
        self.fired_at: float | None = None
        self.resolved_at: float | None = None
        self.value = value

    def view(self) -> AlertView:
        rule = self.rule
        return AlertView(
            rule=rule.name,
            node=self.node,
            severity=rule.severity,
            state=self.state,
            condition=rule.condition,
            value=self.value,
            summary=rule.summary,
            active_at=self.active_at,
            fired_at=self.fired_at,
            resolved_at=self.resolved_at,
            fingerprint=fingerprint(rule.name, self.node),
        )


class Alerts:
    """Every alert of RULES, kept current from the values each node reports.

    `observe` takes a node's new values (each accepted sample); `tick` lets time pass (pending
    alerts reach their `for`, down nodes fire `node_down`). Both return the transitions they
    made, firing and resolved, for the event stream and the notifier.
    """

    def __init__(self, rules: Iterable[Rule], *, master: str = "master",
                 keep_resolved: float = KEEP_RESOLVED) -> None:  # fmt: skip
        every = tuple(rules)
        self.rules = tuple(r for r in every if r.metric not in MASTER_METRICS)
        self.metrics = frozenset(r.metric for r in self.rules)
        """The metrics the node rules test."""
        self.master_rules = tuple(r for r in every if r.metric in MASTER_METRICS)
        self.master = master
        self.keep_resolved = keep_resolved
        self._alerts: dict[tuple[str, str], _Alert] = {}
        self._latest: dict[str, Mapping[str, float]] = {}
        self._waiting: set[str] = set()  # nodes with a pending (or keep-firing) alert
        self._rules_of: dict[str, tuple[Rule, ...]] = {}
        self._count: dict[str, int] = {}  # alerts of each node that has any

    def observe(self, node: str, readings: Mapping[str, float], now: float) -> list[AlertView]:
        """NODE reported READINGS (absent metrics left out) at NOW."""
        self._latest[node] = readings
        return self._evaluate(node, readings, now)

    def tick(self, now: float, down: Iterable[str] = (),
             master: Mapping[str, float] | None = None) -> list[AlertView]:  # fmt: skip
        """Time has passed to NOW: DOWN are the nodes down now, MASTER the master's own
        signals (`history_stopped`)."""
        out: list[AlertView] = []
        down = set(down)
        for node in down:
            self._latest.pop(node, None)
            out += self._evaluate(node, {"down": 1.0}, now)
        for node in sorted(self._waiting - down):
            readings = self._latest.get(node)
            if readings is not None:
                out += self._evaluate(node, readings, now)
        if master is not None:
            out += self._evaluate(self.master, master, now, self.master_rules)
        self._prune(now)
        return out

    def forget(self, node: str, now: float) -> list[AlertView]:
        """NODE left the table: its alerts resolve."""
        self._latest.pop(node, None)
        told = self._evaluate(node, {}, now)
        self._rules_of.pop(node, None)
        return told

    def _evaluate(
        self,
        node: str,
        readings: Mapping[str, float],
        now: float,
        chosen: tuple[Rule, ...] | None = None,
    ) -> list[AlertView]:
        if chosen is None:
            chosen = self._rules_of.get(node)
            if chosen is None:
                chosen = self._rules_of[node] = tuple(r for r in self.rules if r.applies_to(node))
        if node not in self._count:  # the common case: no alert yet, and none holds
            for rule in chosen:
                value = readings.get(rule.metric)
                if value is not None and rule.holds(value):
                    break
            else:
                self._waiting.discard(node)
                return []
        out: list[AlertView] = []
        waiting = False
        for rule in chosen:
            key = (rule.name, node)
            alert = self._alerts.get(key)
            value = readings.get(rule.metric)
            if value is not None and rule.holds(value):
                if alert is None:
                    self._count[node] = self._count.get(node, 0) + 1
                if alert is None or alert.state == "resolved":
                    alert = self._alerts[key] = _Alert(rule, node, now, value)
                alert.last_held, alert.value = now, value
                if alert.state == "pending":
                    if now - alert.active_at >= rule.for_:
                        alert.state, alert.fired_at = "firing", now
                        out.append(alert.view())
                    else:
                        waiting = True
            elif alert is None or alert.state == "resolved":
                continue
            elif alert.state == "pending":
                self._drop(key)
            elif now - alert.last_held >= rule.keep_firing_for:
                alert.state, alert.resolved_at = "resolved", now
                out.append(alert.view())
            else:
                waiting = True
        if waiting:
            self._waiting.add(node)
        else:
            self._waiting.discard(node)
        return out

    def _prune(self, now: float) -> None:
        gone = [
            key
            for key, alert in self._alerts.items()
            if alert.resolved_at is not None and now - alert.resolved_at > self.keep_resolved
        ]
        for key in gone:
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        del self._alerts[key]
        node = key[1]
        left = self._count[node] - 1
        if left:
            self._count[node] = left
        else:
            del self._count[node]

    def next_change(self, node: str) -> float | None:
        """The earliest time an alert of NODE may change with no new readings (a pending one
        reaches its `for`, a firing one may end its `keep_firing_for`), if it has such."""
        if node not in self._waiting:
            return None
        times = [
            a.active_at + a.rule.for_
            if a.state == "pending"
            else a.last_held + a.rule.keep_firing_for
            for (_rule, name), a in self._alerts.items()
            if name == node and a.state != "resolved"
        ]
        return min(times, default=None)

    def nodes(self) -> set[str]:
        """Every node with an alert, or values awaited."""
        return {node for _rule, node in self._alerts} | self._latest.keys()

    def views(self) -> list[AlertView]:
        """Every alert pending, firing, or resolved not long ago: firing first, then by
        severity, rule and node."""
        order = {"firing": 0, "pending": 1, "resolved": 2}
        rank = {"critical": 0, "warning": 1, "info": 2}
        alerts = sorted(
            self._alerts.values(),
            key=lambda a: (order[a.state], rank[a.rule.severity], a.rule.name, a.node),
        )
        return [a.view() for a in alerts]

    def firing(self) -> list[tuple[str, str, str]]:
        """(rule, node, severity) of every firing alert, for /metrics."""
        return [
            (a.rule.name, a.node, a.rule.severity)
            for a in self._alerts.values()
            if a.state == "firing"
        ]


def readings(
    sample: Sample,
    net_rx: float,
    net_tx: float,
    names: Iterable[str],
    *,
    clock_offset: float | None = None,
    rates: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """What alert rules see of a node: the metrics NAMES of SAMPLE (and its network and
    other RATES) that it reports, `down` 0, and its CLOCK_OFFSET (seconds, either way) where
    known. Only the metrics the rules test are read: this runs for every accepted datagram."""
    out: dict[str, float] = {}
    no_memory = sample.meminfo.get("MemTotal", 0) == 0
    for name in names:
        metric = BY_NAME.get(name)
        if metric is None or (no_memory and name.startswith("mem_")):
            continue
        value = read(metric, sample, net_rx, net_tx, rates)
        if value is not None and not (value == 0 and name in ABSENT_AT_ZERO):
            out[name] = value
    out["down"] = 0.0
    if clock_offset is not None:
        out["clock_offset"] = abs(clock_offset)
    return out
