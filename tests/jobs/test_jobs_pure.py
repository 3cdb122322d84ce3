"""Pure parts: host lists, the store, the driver's job-file detection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bramble.jobs.driver import defines_main
from bramble.jobs.hosts import hosts_from_nodes, render
from bramble.jobs.launcher import candidates
from bramble.jobs.mpirun import mpirun_command
from bramble.jobs.store import JobStore, UnknownJobError

NODES = [
    {"name": "node-2", "address": "10.42.0.12", "status": "up", "sample": {"cores": [0.1] * 4}},
    {"name": "node-1", "address": "10.42.0.11", "status": "up", "sample": {"cores": [0.1] * 4}},
    {"name": "node-3", "address": "10.42.0.13", "status": "down", "sample": {"cores": [0.0] * 4}},
    {"name": "local", "address": "127.0.0.1", "status": "up", "sample": {"cores": []}},
]


def test_hosts_formats() -> None:
    hosts = hosts_from_nodes(NODES)
    assert [h.name for h in hosts] == ["local", "node-1", "node-2"]
    kw = {"domain": "cluster", "scheduler": "tls://10.42.0.1:8786"}
    assert render("mpi", hosts, **kw) == (
        "127.0.0.1 slots=1\n10.42.0.11 slots=4\n10.42.0.12 slots=4\n"
    )
    etc = render("hosts", hosts, **kw)
    assert "10.42.0.11\tnode-1.cluster node-1\n" in etc and "node-3" not in etc
    inv = render("ansible", hosts, **kw)
    assert inv.startswith("[bramble]\n") and "node-2 ansible_host=10.42.0.12" in inv
    assert render("dask", hosts, **kw) == "tls://10.42.0.1:8786\n"


def test_mpi_hostfile_merges_shared_addresses() -> None:
    nodes = [
        {"name": f"n{i}", "address": "127.0.0.1", "status": "up", "sample": {"cores": [0, 0]}}
        for i in range(3)
    ]
    text = render("mpi", hosts_from_nodes(nodes), domain="c", scheduler="")
    assert text == "127.0.0.1 slots=6\n"


def test_mpirun_command_line(tmp_path: Path) -> None:
    cmd = mpirun_command(tmp_path / "hf", ["prog", "-x"], n=3, launcher="/l.sh", as_root=True)
    assert cmd == [
        "mpirun", "--hostfile", str(tmp_path / "hf"), "-n", "3",
        "--mca", "plm_rsh_agent", "/l.sh",
        "--mca", "oob_tcp_dynamic_ipv4_ports", "47000-47099",
        "--allow-run-as-root", "prog", "-x",
    ]  # fmt: skip
    # On the cluster LAN only, spread over the nodes: what `bramble mpirun --by-node` runs.
    cmd = mpirun_command(
        tmp_path / "hf", ["prog"], n=None, launcher=None, as_root=False,
        subnet="10.42.0.0/24", by_node=True,
    )  # fmt: skip
    assert cmd == [
        "mpirun", "--hostfile", str(tmp_path / "hf"), "--map-by", "node",
        "--mca", "oob_tcp_if_include", "10.42.0.0/24",
        "--mca", "btl_tcp_if_include", "10.42.0.0/24",
        "--mca", "oob_tcp_dynamic_ipv4_ports", "47000-47099", "prog",
    ]  # fmt: skip


def test_store_round_trip(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "db" / "jobs.db")
    now = time.time()
    job = store.create("/jobs/a.py", ["1", "two"], "me@host", now)
    assert job.state == "queued" and job.args == ["1", "two"]
    assert store.mark_running(job.id, now + 1)
    store.append_output(job.id, "stdout", "hello ", now + 2)
    store.append_output(job.id, "stderr", "warn\n", now + 2)
    store.append_output(job.id, "stdout", "world\n", now + 3)
    done = store.finish(job.id, "done", now + 4, exit_status=0)
    assert done.state == "done" and done.duration == pytest.approx(3.0)
    # a final state sticks
    assert store.finish(job.id, "failed", now + 5).state == "done"
    assert store.text(job.id, "stdout") == "hello world\n"
    chunks = store.output(job.id)
    assert [c.stream for c in chunks] == ["stdout", "stderr", "stdout"]
    assert [c.data for c in store.output(job.id, after=chunks[1].seq)] == ["world\n"]
    assert [j.id for j in store.list_jobs(state="done")] == [job.id]
    with pytest.raises(UnknownJobError):
        store.get(job.id + 100)
    eid = store.log_exec("me", "uptime", ["*"], 5, now)
    store.finish_exec(eid, 0.1, {"node-1": {"rc": 0, "output": "up"}})
    assert store.execs()[0].results == {"node-1": {"rc": 0, "output": "up"}}


def test_defines_main() -> None:
    assert defines_main("def main(client):\n    pass\n", "f.py")
    assert not defines_main("import bramble.jobs\nc = bramble.jobs.connect()\n", "f.py")
    with pytest.raises(SyntaxError):
        defines_main("def main(:\n", "f.py")


def test_the_netns_launcher_looks_only_in_its_own_lab() -> None:
    # two labs on one machine hold the same node addresses (10.42.0.11 in each)
    names = ["brl-a-master", "brl-a-node-1", "brl-b-master", "brl-b-node-1", "other"]
    assert candidates(names, "brl-b-master") == ["brl-b-master", "brl-b-node-1"]
    assert candidates(names, "brl-a-master") == ["brl-a-master", "brl-a-node-1"]
    assert candidates(names, None) == names  # not in a lab: every namespace
    assert candidates(names, "other") == names
