"""The spec's `[[alerts]]` rules and `[alerting]`: errors located like every spec error, the
built-in rules on by default, changed by a table of their name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bramble.errors import SpecError
from bramble.master.alerts import rules
from bramble.spec import BUILTIN_ALERTS, parse_spec


def error(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "test.toml")
    return caught.value


def test_builtin_rules_are_on_with_no_configuration() -> None:
    names = {r.name for r in rules(parse_spec(""))}
    assert names == {r.name for r in BUILTIN_ALERTS}
    assert {"node_down", "temperature_high", "memory_full", "disk_full"} <= names
    assert rules(parse_spec("[alerting]\ndefaults = false\n")) == ()


def test_a_rule_of_the_spec() -> None:
    spec = parse_spec(
        '[alerting]\ndefaults = false\n\n[[alerts]]\nname = "busy"\nmetric = "load1"\n'
        'op = ">="\nthreshold = 4\nfor = "2m"\nseverity = "critical"\nnodes = "node-*"\n'
    )
    (rule,) = rules(spec)
    assert (rule.name, rule.metric, rule.op, rule.threshold) == ("busy", "load1", ">=", 4)
    assert rule.for_ == 120 and rule.severity == "critical"
    assert rule.applies_to("node-3") and not rule.applies_to("master")


def test_a_table_named_like_a_builtin_rule_changes_it() -> None:
    spec = parse_spec(
        '[[alerts]]\nname = "temperature_high"\nthreshold = 70\n\n'
        '[[alerts]]\nname = "disk_full"\nenabled = false\n'
    )
    by_name = {r.name: r for r in rules(spec)}
    assert "disk_full" not in by_name
    hot = by_name["temperature_high"]
    assert hot.threshold == 70 and hot.metric == "cputemp" and hot.for_ == 60


@pytest.mark.parametrize(
    ("body", "key", "line", "words"),
    [
        ('name = "x"\nmetric = "cputmp"\nthreshold = 1', "alerts[0].metric", 4, "cputemp"),
        ('name = "x"\nmetric = "cputemp"', "alerts[0].threshold", 2, "is required"),
        ('name = "x"\nthreshold = 1', "alerts[0].metric", 2, "is required"),
        ('name = "Hot Rule"\nmetric = "cputemp"\nthreshold = 1', "alerts[0].name", 3, "rule name"),
        ('name = "x"\nmetric = "cputemp"\nthreshold = 1\nfor = "soon"', "alerts[0].for", 6,
         "not a duration"),
        ('name = "x"\nmetric = "cputemp"\nthreshold = 1\nop = "=>"', "alerts[0].op", 6, ">="),
        ('name = "x"\nmetric = "cputemp"\nthreshold = 1\nseverity = "page"',
         "alerts[0].severity", 6, "critical"),
        ('name = "x"\nmetric = "cputemp"\nthreshold = 1\nfro = "1m"', "alerts[0].fro", 6,
         "did you mean 'for'"),
        ('name = "x"\nmetric = "cputemp"\nthreshold = 1\nnodes = "a b"', "alerts[0].nodes", 6,
         "pattern"),
    ],
)  # fmt: skip
def test_rule_errors_are_located(body: str, key: str, line: int, words: str) -> None:
    err = error(f"# rules\n[[alerts]]\n{body}\n")
    assert err.key == key and err.line == line and err.file == "test.toml"
    assert words in str(err) + (err.fix or "")


def test_duplicate_rules_and_bad_receivers() -> None:
    rule = '[[alerts]]\nname = "x"\nmetric = "load1"\nthreshold = 1\n'
    err = error(rule + "\n" + rule)
    assert err.key == "alerts[1].name" and err.line == 7 and "duplicate" in str(err)
    err = error('[alerting]\nwebhooks = ["ftp://x"]\n')
    assert err.key == "alerting.webhooks" and err.line == 2
    err = error('[alerting]\nalertmanagers = ["alertmanager:9093"]\n')
    assert err.key == "alerting.alertmanagers" and "http://" in str(err)
    err = error('[alerting]\ncommand = ["notify"]\n')
    assert err.key == "alerting.command" and "absolute" in str(err)
    err = error("[alerting]\ngroup_wait = -1\n")
    assert err.key == "alerting.group_wait"


@given(st.integers(0, 10**6), st.sampled_from(["", "s", "m", "h", "d", "ms"]))
def test_durations_read_as_seconds(number: int, unit: str) -> None:
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "ms": 0.001}[unit]
    text = f'[[alerts]]\nname = "x"\nmetric = "load1"\nthreshold = 1\nfor = "{number}{unit}"\n'
    seconds = number * factor
    if seconds > 366 * 86400:
        assert error(text).key == "alerts[0].for"
    else:
        assert parse_spec(text).alerts[0].for_ == pytest.approx(seconds)
