"""exec: selection, folding, and a real run on every worker of a loopback cluster."""

from __future__ import annotations

import pytest
from bramble_testing import LocalCluster

from bramble.jobs.exec import (
    ExecError,
    NodeResult,
    expand_selection,
    fold,
    format_results,
    run_exec,
    select,
    worst_status,
)


def test_expand_selection_ranges_and_globs() -> None:
    assert expand_selection("node-[1-3,7],gpu*") == ["node-1", "node-2", "node-3", "node-7", "gpu*"]
    assert expand_selection("n[01-03]") == ["n01", "n02", "n03"]
    assert expand_selection(" a , b ") == ["a", "b"]


def test_select() -> None:
    names = ["node-1", "node-2", "node-10", "master"]
    assert select(names, None) == sorted(names)
    assert select(names, "node-[1-2]") == ["node-1", "node-2"]
    assert select(names, "node-*") == ["node-1", "node-10", "node-2"]
    with pytest.raises(ExecError, match="no live worker matches"):
        select(names, "gpu-*")


def test_fold_and_format_group_identical_outputs() -> None:
    results = [
        NodeResult(node="node-1", rc=0, output="Linux\n"),
        NodeResult(node="node-2", rc=0, output="Linux\n"),
        NodeResult(node="node-3", rc=1, output="boom\n"),
        NodeResult(node="node-4", rc=None, output="", timed_out=True),
    ]
    groups = fold(results)
    assert [g[0] for g in groups] == [["node-1", "node-2"], ["node-3"], ["node-4"]]
    text = format_results(results)
    assert "node-1,node-2 (2) exit 0" in text
    assert text.count("Linux") == 1
    assert "node-3 (1) exit 1" in text and "node-4 (1) timed out" in text
    assert worst_status(results) == 255
    assert worst_status(results[:2]) == 0


@pytest.mark.slow
def test_exec_on_all_workers_returns_one_result_per_node(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        results = run_exec(c, "echo $BRAMBLE_X; echo out; echo err >&2; exit 3", None, 10)
        names = sorted(w["name"] for w in c.scheduler_info()["workers"].values())
    assert [r.node for r in results] == names
    assert len(names) >= 2
    for r in results:
        assert r.rc == 3 and not r.timed_out
        assert "out" in r.output and "err" in r.output
    assert len(fold(results)) == 1


@pytest.mark.slow
def test_exec_runs_in_each_worker_process_and_times_out(cluster: LocalCluster) -> None:
    with cluster.client() as c:
        pids = run_exec(c, "echo $PPID", "node-[1-2]", 10)
        assert len({r.output for r in pids}) == 2  # a different worker process each
        slow = run_exec(c, "sleep 30", "node-1", 0.5)
    assert [r.node for r in slow] == ["node-1"]
    assert slow[0].timed_out and worst_status(slow) == 255
