"""Notification grouping and repeat (Alertmanager's), and the webhook payload. Pure."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from bramble.master.alerts import fingerprint
from bramble.master.notify import Dispatcher, Notification, webhook_payload
from bramble.master.views import AlertState, AlertView


def alert(node: str, state: AlertState = "firing", rule: str = "hot", at: float = 0) -> AlertView:
    return AlertView(
        rule=rule, node=node, severity="warning", state=state, condition="cputemp > 80",
        value=85.0, summary="hot", active_at=at - 10, fired_at=at,
        resolved_at=at if state == "resolved" else None, fingerprint=fingerprint(rule, node),
    )  # fmt: skip


def told(notes: list[Notification]) -> list[tuple[str, list[str], list[str]]]:
    return [(n.group, [a.node for a in n.firing], [a.node for a in n.resolved]) for n in notes]


def dispatcher() -> Dispatcher:
    return Dispatcher(group_wait=10, group_interval=60, repeat_interval=3600)


def test_alerts_of_one_rule_are_one_notification_after_group_wait() -> None:
    d = dispatcher()
    d.add([alert("n1")], 0)
    d.add([alert("n2"), alert("n1", rule="cold")], 5)
    assert d.due(9) == []
    assert told(d.due(10)) == [("hot", ["n1", "n2"], [])]
    assert told(d.due(15)) == [("cold", ["n1"], [])]  # its own group_wait, from its first
    assert d.due(16) == [] and d.due(69) == []


def test_changes_wait_for_the_group_interval_and_resolved_are_told_once() -> None:
    d = dispatcher()
    d.add([alert("n1")], 0)
    assert told(d.due(10)) == [("hot", ["n1"], [])]
    d.add([alert("n2")], 20)
    d.add([alert("n1", "resolved", at=30)], 30)
    assert d.due(69) == []
    assert told(d.due(70)) == [("hot", ["n2"], ["n1"])]
    assert d.due(130) == []  # nothing changed: no notification
    d.add([alert("n2", "resolved", at=140)], 140)
    assert told(d.due(190)) == [("hot", [], ["n2"])]
    assert d.pending() == 0


def test_the_same_firing_alerts_are_repeated_every_repeat_interval() -> None:
    d = dispatcher()
    d.add([alert("n1")], 0)
    sent = [t for minute in range(0, 130) for t in told(d.due(10 + minute * 60))]
    # at 10 s, then at each flush 3600 s or more after the last: 3610, 7210
    assert len(sent) == 3


def test_an_alert_fired_and_resolved_before_group_wait_is_not_told() -> None:
    d = dispatcher()
    d.add([alert("n1")], 0)
    d.add([alert("n1", "resolved", at=3)], 3)
    assert d.due(10) == [] and d.pending() == 0


def test_silenced_alerts_are_left_out() -> None:
    d = dispatcher()
    d.add([alert("n1"), alert("n2")], 0)
    assert told(d.due(10, lambda a: a.node == "n2")) == [("hot", ["n1"], [])]
    assert d.due(70, lambda a: True) == []  # all silenced: nothing fires to tell


@given(st.lists(st.tuples(st.floats(0, 30), st.sampled_from(["n1", "n2", "n3"]),
                          st.booleans()), max_size=80))  # fmt: skip
def test_never_more_than_one_notification_per_group_per_interval(
    steps: list[tuple[float, str, bool]],
) -> None:
    d = dispatcher()
    now, sent = 0.0, []
    for gap, node, firing in steps:
        now += gap
        d.add([alert(node, "firing" if firing else "resolved", at=now)], now)
        sent += [now for _ in d.due(now)]
        sent += [now + 0.5 for _ in d.due(now + 0.5)]
    assert all(b - a >= 60 for a, b in itertools.pairwise(sent))


def test_the_webhook_payload_is_alertmanagers() -> None:
    note = Notification("hot", (alert("n1", at=1_700_000_000),),
                        (alert("n2", "resolved", at=1_700_000_060),))  # fmt: skip
    payload = webhook_payload(note, "http://master:8080")
    assert set(payload) == {
        "version", "groupKey", "truncatedAlerts", "status", "receiver", "groupLabels",
        "commonLabels", "commonAnnotations", "externalURL", "alerts",
    }  # fmt: skip
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["groupLabels"] == {"alertname": "hot"}
    assert payload["commonLabels"] == {"alertname": "hot", "severity": "warning"}
    first, second = payload["alerts"]
    assert first["labels"] == {"alertname": "hot", "node": "n1", "severity": "warning"}
    assert first["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert first["endsAt"] == "0001-01-01T00:00:00Z" and first["status"] == "firing"
    assert second["status"] == "resolved" and second["endsAt"] == "2023-11-14T22:14:20.000Z"
    assert first["annotations"]["value"] == "85" and first["fingerprint"] == fingerprint(
        "hot", "n1"
    )
    assert first["generatorURL"] == "http://master:8080/api/alerts"
