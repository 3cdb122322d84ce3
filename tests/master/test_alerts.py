"""The alert state machine, pure: time is passed in."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bramble.master.alerts import Alerts, Rule, readings, rules
from bramble.spec import parse_spec
from bramble.telemetry.wire import Sample

PI = Sample(1500, 50.0, 0.2, (0.1, 0.1, 0.1), {"MemTotal": 1000, "MemAvailable": 400},
            disk={"total": 100, "used": 95})  # fmt: skip
NAMES = ("cputemp", "cpufreq", "mem_used_percent", "mem_used", "disk_used_percent")


def seen(**changes: object) -> dict[str, float]:
    return readings(PI._replace(**changes), 0, 0, NAMES)


HOT = Rule("hot", "cputemp", ">", 80, for_=10, severity="warning")
DOWN = Rule("node_down", "down", "==", 1, severity="critical")


def states(alerts: Alerts) -> dict[tuple[str, str], str]:
    return {(a.rule, a.node): a.state for a in alerts.views()}


def test_pending_for_its_duration_then_firing_then_resolved() -> None:
    alerts = Alerts([HOT])
    assert alerts.observe("n1", {"cputemp": 85}, 100) == []
    assert states(alerts) == {("hot", "n1"): "pending"}
    assert alerts.tick(105) == []  # 5 s of 10
    (fired,) = alerts.tick(110)
    assert (fired.state, fired.node, fired.value, fired.fired_at) == ("firing", "n1", 85, 110)
    assert fired.active_at == 100 and fired.condition == "cputemp > 80"
    assert alerts.observe("n1", {"cputemp": 86}, 111) == []  # firing already: nothing new
    (resolved,) = alerts.observe("n1", {"cputemp": 70}, 112)
    assert resolved.state == "resolved" and resolved.resolved_at == 112
    assert states(alerts) == {("hot", "n1"): "resolved"}
    alerts.tick(112 + 301)  # resolved alerts are listed a while, then forgotten
    assert alerts.views() == []


def test_next_change_says_when_a_pending_alert_reaches_its_for() -> None:
    alerts = Alerts([HOT, Rule("flappy", "load1", ">", 1, keep_firing_for=5)])
    assert alerts.next_change("n1") is None
    alerts.observe("n1", {"cputemp": 85, "load1": 2}, 100)
    assert alerts.next_change("n1") == 105  # flappy, firing, could resolve 5 s on
    alerts.observe("n1", {"cputemp": 85, "load1": 2}, 103)
    assert alerts.next_change("n1") == 108
    alerts.tick(108)
    assert alerts.next_change("n1") == 110  # hot's for ends (flappy still holds)
    alerts.tick(110)
    assert alerts.next_change("n1") is None  # hot fired


def test_no_for_fires_at_once_and_a_node_out_of_its_glob_is_not_watched() -> None:
    rule = Rule("busy", "load1", ">=", 4, nodes="node-*")
    alerts = Alerts([rule])
    (fired,) = alerts.observe("node-1", {"load1": 4}, 0)
    assert fired.state == "firing"
    assert alerts.observe("master", {"load1": 9}, 0) == []


def test_flapping_faster_than_for_never_fires() -> None:
    alerts = Alerts([HOT])
    told = []
    for second in range(100):
        told += alerts.observe("n1", {"cputemp": 85 if second % 6 < 5 else 20}, second)
        told += alerts.tick(second + 0.5)
    assert told == []


def test_keep_firing_for_rides_out_a_flap() -> None:
    rule = Rule("hot", "cputemp", ">", 80, keep_firing_for=5)
    alerts = Alerts([rule])
    told = []
    for second in range(30):
        told += alerts.observe("n1", {"cputemp": 85 if second % 3 else 20}, second)
    assert [a.state for a in told] == ["firing"]  # once, not every flap
    for second in range(30, 40):
        told += alerts.observe("n1", {"cputemp": 20}, second)
    assert [a.state for a in told] == ["firing", "resolved"]
    assert told[1].resolved_at == 34  # 5 s after it last held (second 29)


def test_a_node_down_while_firing_resolves_its_metric_alerts_and_fires_node_down() -> None:
    alerts = Alerts([HOT, DOWN])
    alerts.observe("n1", seen(cputemp=90.0), 0)
    (hot,) = alerts.tick(10)
    assert hot.rule == "hot" and hot.state == "firing"
    told = alerts.tick(20, down=["n1"])
    assert {(a.rule, a.state) for a in told} == {("hot", "resolved"), ("node_down", "firing")}
    assert alerts.tick(21, down=["n1"]) == []  # told once
    told = alerts.observe("n1", seen(cputemp=50.0), 30)
    assert [(a.rule, a.state) for a in told] == [("node_down", "resolved")]


def test_absent_metrics_hold_no_condition() -> None:
    # a board without a sensor reports 0 °C: absent, so `cputemp < 10` never fires for it
    cold = Rule("cold", "cputemp", "<", 10)
    alerts = Alerts([cold])
    assert alerts.observe("x86", seen(cputemp=0.0), 0) == []
    assert [a.state for a in alerts.observe("pi", seen(cputemp=5.0), 0)] == ["firing"]
    assert seen() == {"cputemp": 50, "cpufreq": 1500, "mem_used_percent": 60, "mem_used": 600,
                      "disk_used_percent": 95, "down": 0}  # fmt: skip
    bare = Sample(0, 0.0, 0.2, (0.1, 0.1, 0.1), {})  # no sensors, no meminfo, no disk
    assert readings(bare, 0, 0, NAMES, clock_offset=-2) == {"down": 0, "clock_offset": 2}


def test_master_signals_are_the_masters_alone() -> None:
    stopped = Rule("history_stopped", "history_stopped", "==", 1, for_=30, severity="critical")
    alerts = Alerts([stopped], master="head")
    assert alerts.observe("head", {"cputemp": 50}, 0) == []
    assert alerts.tick(1, master={"history_stopped": 1}) == []
    (fired,) = alerts.tick(31, master={"history_stopped": 1})
    assert (fired.node, fired.state) == ("head", "firing")
    assert alerts.observe("head", {"cputemp": 50}, 32) == []  # node readings leave it be
    assert alerts.firing() == [("history_stopped", "head", "critical")]


def test_forgetting_a_node_resolves_its_alerts() -> None:
    alerts = Alerts([DOWN])
    alerts.tick(0, down=["gone"])
    assert [a.state for a in alerts.forget("gone", 1)] == ["resolved"]


@given(st.lists(st.tuples(st.floats(0, 3), st.booleans()), max_size=60))
def test_fires_only_after_holding_for_its_duration(steps: list[tuple[float, bool]]) -> None:
    """Whatever the sequence, an alert fires only when the condition has held, unbroken, for
    `for`; it is told firing and resolved alternately, starting with firing."""
    alerts = Alerts([HOT])
    now, held_since = 0.0, None
    told = []
    for gap, hot in steps:
        now += gap
        new = alerts.observe("n1", {"cputemp": 90 if hot else 10}, now)
        if not hot:
            held_since = None
        elif held_since is None:
            held_since = now
        for alert in new:
            if alert.state == "firing":
                assert held_since is not None and now - held_since >= HOT.for_
        told += new
    assert [a.state for a in told] == ["firing", "resolved"] * (len(told) // 2) + (
        ["firing"] if len(told) % 2 else []
    )


def _builtin(name: str) -> Rule:
    (rule,) = [r for r in rules(parse_spec("")) if r.name == name]
    return rule


def _flags(flags: int | None) -> dict[str, float]:
    return readings(PI._replace(throttled=flags), 0, 0, ("throttled", "undervoltage"))


def test_builtin_undervoltage_fires_at_once_on_the_now_flag_only() -> None:
    rule = _builtin("undervoltage")
    assert (rule.metric, rule.severity, rule.for_) == ("undervoltage", "critical", 0)
    alerts = Alerts([rule])
    assert alerts.observe("pi", _flags(0x50000), 0) == []  # since boot only: not now
    (fired,) = alerts.observe("pi", _flags(0x50005), 1)
    assert (fired.rule, fired.state, fired.value) == ("undervoltage", "firing", 1)
    (resolved,) = alerts.observe("pi", _flags(0x50000), 2)
    assert resolved.state == "resolved"


def test_builtin_throttled_fires_after_its_for() -> None:
    rule = _builtin("throttled")
    assert (rule.metric, rule.severity, rule.for_) == ("throttled", "warning", 30)
    alerts = Alerts([rule])
    assert alerts.observe("pi", _flags(0x4), 0) == []
    assert states(alerts) == {("throttled", "pi"): "pending"}
    assert alerts.observe("pi", _flags(0x80008), 10) == []  # soft limit, not throttled
    assert states(alerts) == {}
    alerts.observe("pi", _flags(0x50005), 20)
    (fired,) = alerts.tick(50)
    assert (fired.rule, fired.state) == ("throttled", "firing")


def test_a_board_without_the_firmware_flags_never_fires_them() -> None:
    alerts = Alerts([_builtin("throttled"), _builtin("undervoltage")])
    assert _flags(None) == {"down": 0}
    assert alerts.observe("x86", _flags(None), 0) == []
    assert alerts.tick(1000) == []
