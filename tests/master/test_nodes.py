"""Node table rules, with time passed in."""

from __future__ import annotations

import pytest

from bramble.master.nodes import DOWN, STALE, UP, NodeTable
from bramble.telemetry.wire import Packet, Rejected, Sample

SAMPLE = Sample(1000, 40.0, 0.5, (1.0, 1.0, 1.0), {"MemTotal": 100}, net={"eth0": (1000, 2000)})
T0 = 1_800_000_000.0


def packet(node: str = "n1", boot: int = 100, seq: int = 1, ts: float = T0, **kw: object) -> Packet:
    sample = kw.pop("sample", SAMPLE)
    return Packet(node, boot, seq, ts, 1.0, sample, bool(kw.get("signed", True)), "k1")  # type: ignore[arg-type]


def kinds(changes: list) -> list[str]:  # type: ignore[type-arg]
    return [c.kind for c in changes]


def test_new_node_is_up_and_announced() -> None:
    table = NodeTable()
    assert kinds(table.accept(packet(), T0, "10.42.0.11")) == ["new"]
    view = table.view("n1", T0)
    assert view is not None
    assert view["status"] == UP and view["address"] == "10.42.0.11"
    assert view["sample"] is not None and view["sample"]["cpuusage"] == 0.5
    assert view["first_seen"] == T0 and view["metrics"]["mem_total"] == 100


def test_replay_window() -> None:
    table = NodeTable()
    table.accept(packet(seq=5), T0)
    for old in (5, 4, 1):
        with pytest.raises(Rejected) as caught:
            table.accept(packet(seq=old, ts=T0 + 1), T0 + 1)
        assert caught.value.reason == "replay"
    assert table.accept(packet(seq=6, ts=T0 + 1), T0 + 1) == []
    # an older boot with an older clock is a replay of a previous run
    with pytest.raises(Rejected):
        table.accept(packet(boot=99, seq=50, ts=T0 - 5), T0 + 2)


def test_stale_then_down_then_up_again() -> None:
    table = NodeTable(stale_after=3, down_after=10)
    table.accept(packet(), T0)
    assert table.tick(T0 + 2.9) == []
    assert kinds(table.tick(T0 + 3.1)) == [STALE]
    assert table.tick(T0 + 5) == []
    assert kinds(table.tick(T0 + 10.1)) == [DOWN]
    assert table.counts(T0 + 11) == {UP: 0, STALE: 0, DOWN: 1}
    assert kinds(table.accept(packet(seq=2, ts=T0 + 12), T0 + 12)) == [UP]
    assert table.view("n1", T0 + 12)["status"] == UP  # type: ignore[index]


def test_thresholds_scale_with_the_node_interval() -> None:
    table = NodeTable(stale_after=3, down_after=10)
    slow = Packet("slow", 1, 1, T0, 5.0, SAMPLE, True, "k1")
    table.accept(slow, T0)
    assert table.tick(T0 + 14) == []
    assert kinds(table.tick(T0 + 16)) == [STALE]


def test_new_boot_is_a_reboot_event() -> None:
    table = NodeTable()
    table.accept(packet(boot=100, seq=900), T0)
    changes = table.accept(packet(boot=200, seq=1, ts=T0 + 30), T0 + 30)
    assert kinds(changes) == ["rebooted"]
    assert table.view("n1", T0 + 30)["rebooted_at"] == T0 + 30  # type: ignore[index]
    # a board without a clock may come back with a smaller boot id but a later time
    changes = table.accept(packet(boot=150, seq=1, ts=T0 + 60), T0 + 60)
    assert kinds(changes) == ["rebooted"]


def test_down_node_coming_back_after_reboot() -> None:
    table = NodeTable()
    table.accept(packet(), T0)
    table.tick(T0 + 20)
    assert kinds(table.accept(packet(boot=300, seq=1, ts=T0 + 40), T0 + 40)) == ["rebooted", UP]


def test_network_rates_from_consecutive_samples() -> None:
    table = NodeTable()
    table.accept(packet(), T0)
    later = SAMPLE._replace(net={"eth0": (3000, 2500)})
    table.accept(packet(seq=2, ts=T0 + 2, sample=later), T0 + 2)
    assert table.view("n1", T0 + 2)["rates"] == {"net_rx": 1000.0, "net_tx": 250.0}  # type: ignore[index]
    reset = SAMPLE._replace(net={"eth0": (10, 10)})  # counters went back: no negative rate
    table.accept(packet(seq=3, ts=T0 + 3, sample=reset), T0 + 3)
    assert table.view("n1", T0 + 3)["rates"] == {"net_rx": 0.0, "net_tx": 0.0}  # type: ignore[index]


def test_disk_and_swap_rates_where_the_node_reports_the_counters() -> None:
    table = NodeTable()
    pi = SAMPLE._replace(diskio=(0, 1000), swap=(5, 5), throttled=0x50005, model="Pi 4")
    table.accept(packet(sample=pi), T0)
    view = table.view("n1", T0)
    assert view is not None and "disk_read" not in view["rates"]  # one sample: no rate yet
    assert view["metrics"]["throttled"] == 1 and "disk_read" not in view["metrics"]
    later = pi._replace(diskio=(4096, 3000), swap=(9, 5))
    table.accept(packet(seq=2, ts=T0 + 2, sample=later), T0 + 2)
    view = table.view("n1", T0 + 2)
    assert view is not None
    assert view["rates"] == {"net_rx": 0.0, "net_tx": 0.0, "disk_read": 2048.0,
                             "disk_write": 1000.0, "swap_in": 2.0, "swap_out": 0.0}  # fmt: skip
    assert view["metrics"]["disk_read"] == 2048.0 and view["metrics"]["swap_in"] == 2.0
    assert view["sample"] is not None and view["sample"]["model"] == "Pi 4"
    # a board that stops reporting them (the disk went): absent again, not 0
    table.accept(packet(seq=3, ts=T0 + 3, sample=SAMPLE), T0 + 3)
    view = table.view("n1", T0 + 3)
    assert view is not None and set(view["rates"]) == {"net_rx", "net_tx"}
    assert not {"disk_read", "throttled", "undervoltage"} & set(view["metrics"])
    # counters start again after a reboot: no rate across it
    table.accept(packet(boot=200, seq=1, ts=T0 + 4, sample=pi), T0 + 4)
    table.accept(packet(boot=200, seq=2, ts=T0 + 5, sample=pi), T0 + 5)
    assert table.view("n1", T0 + 5)["rates"]["disk_read"] == 0.0  # type: ignore[index,typeddict-item]


def test_bounded_table_evicts_down_nodes_first() -> None:
    table = NodeTable(max_nodes=2)
    table.accept(packet("a"), T0)
    table.accept(packet("b"), T0 + 5)
    with pytest.raises(Rejected) as caught:
        table.accept(packet("c", ts=T0 + 6), T0 + 6)
    assert caught.value.reason == "too_many_nodes"
    # once 'a' is down, a new node takes its place
    assert kinds(table.accept(packet("c", ts=T0 + 12), T0 + 12)) == ["new"]
    assert sorted(table.nodes) == ["b", "c"]


def test_a_flood_of_new_names_at_a_full_table_costs_one_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table = NodeTable(max_nodes=100)
    for i in range(100):
        table.accept(packet(f"n{i}"), T0)
    looked = 0
    status_at = table.status_at

    def counted(node: object, now: float) -> str:
        nonlocal looked
        looked += 1
        return status_at(node, now)  # type: ignore[arg-type]

    monkeypatch.setattr(table, "status_at", counted)
    for i in range(10_000):
        with pytest.raises(Rejected, match="already tracking 100 nodes"):
            table.accept(packet(f"flood-{i}", ts=T0 + 1), T0 + 1 + i / 10_000)
    assert looked == 100, "one scan of the table, not one per datagram"
    # Once the earliest node can be down, the next new name looks again and takes its place.
    assert kinds(table.accept(packet("late", ts=T0 + 11), T0 + 11)) == ["new"]


def test_a_node_that_shortens_its_interval_can_be_down_sooner() -> None:
    table = NodeTable(max_nodes=2)
    table.accept(packet("a"), T0)
    table.accept(packet("b"), T0)
    with pytest.raises(Rejected):  # no node down before T0 + 10
        table.accept(packet("c", ts=T0 + 1), T0 + 1)
    short = Packet("a", 100, 2, T0 + 2, 0.1, SAMPLE, True, "k1")
    table.accept(short, T0 + 2)  # a now misses 10 datagrams in 1 s
    assert kinds(table.accept(packet("c", ts=T0 + 3.5), T0 + 3.5)) == ["new"]
    assert sorted(table.nodes) == ["b", "c"]


def test_dirty_names_are_drained_once() -> None:
    table = NodeTable()
    table.accept(packet("b"), T0)
    table.accept(packet("a"), T0)
    assert table.drain_dirty() == ["a", "b"]
    assert table.drain_dirty() == []


def test_unsigned_legacy_packets_skip_the_replay_window() -> None:
    table = NodeTable(default_interval=1.0)
    legacy = Packet("10.42.0.50", 0, 0, T0, 0.0, SAMPLE, False, None)
    table.accept(legacy, T0)
    table.accept(legacy._replace(ts=T0 + 1), T0 + 1)
    assert table.view("10.42.0.50", T0 + 1)["interval"] == 1.0  # type: ignore[index]


def test_only_the_names_the_policy_admits_join() -> None:
    table = NodeTable(admit=frozenset({"node-1"}))
    table.accept(packet("node-1"), T0)
    with pytest.raises(Rejected) as caught:
        table.accept(packet("fake-1"), T0)
    assert caught.value.reason == "unknown_node" and list(table.nodes) == ["node-1"]


def test_a_claimed_interval_is_capped() -> None:
    table = NodeTable(default_interval=0.5, stale_after=3, down_after=10)
    table.accept(packet()._replace(interval=3600.0), T0)
    view = table.view("n1", T0)
    assert view is not None and view["interval"] == 5.0  # ten of the spec's intervals
    assert table.view("n1", T0 + 51)["status"] == DOWN  # type: ignore[index]
    legacy = NodeTable(default_interval=0.1)  # the original daemon's 2 s always fits
    legacy.accept(packet(signed=False)._replace(interval=2.0), T0)
    assert legacy.view("n1", T0)["interval"] == 2.0  # type: ignore[index]


def test_remembered_windows_refuse_what_was_accepted_before_a_restart() -> None:
    table = NodeTable()
    table.remember({"n1": (100, 5, T0)})
    assert table.window("n1") == (100, 5, T0)
    for old in (packet(seq=5), packet(seq=3), packet(boot=99, seq=9, ts=T0 - 1)):
        with pytest.raises(Rejected) as caught:
            table.accept(old, T0 + 1)
        assert caught.value.reason == "replay"
    assert kinds(table.accept(packet(seq=6, ts=T0 + 1), T0 + 1)) == ["new"]
    assert table.window("n1") == (100, 6, T0 + 1)
    assert kinds(table.accept(packet(boot=200, seq=1, ts=T0 + 2), T0 + 2)) == ["rebooted"]


def test_an_evicted_node_keeps_its_window() -> None:
    table = NodeTable(max_nodes=1, down_after=2, stale_after=1)
    table.accept(packet("a", seq=7), T0)
    table.accept(packet("b"), T0 + 10)  # a is down: evicted to make room
    assert list(table.nodes) == ["b"] and table.window("a") == (100, 7, T0)
    with pytest.raises(Rejected):
        table.accept(packet("a", seq=7), T0 + 11)


def test_an_unsigned_datagram_never_changes_a_node_that_signs() -> None:
    table = NodeTable()
    table.accept(packet("n1"), T0)
    for now in (T0 + 1, T0 + 2):
        with pytest.raises(Rejected) as caught:
            table.accept(packet("n1", signed=False, sample=SAMPLE._replace(cpufreq=1)), now)
        assert caught.value.reason == "name_taken"
    assert table.nodes["n1"].signed and table.nodes["n1"].sample == SAMPLE
    table.remember({"n2": (1, 1, T0)})  # signed before a restart: the same
    with pytest.raises(Rejected):
        table.accept(packet("n2", signed=False), T0)
