"""The job runner against a real TLS Dask cluster on loopback."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bramble_testing import LocalCluster

from bramble.jobs.runner import JobFileError, JobRunner
from bramble.jobs.store import JobStore

pytestmark = pytest.mark.slow


_RUNNERS: list[JobRunner] = []


@pytest.fixture(autouse=True)
def _close_runners() -> Iterator[None]:
    """Close every runner a test made, so no standby driver outlives its test."""
    yield
    while _RUNNERS:
        _RUNNERS.pop().close()


def make_runner(cluster: LocalCluster, jobs_dir: Path, db: Path) -> JobRunner:
    config = cluster.config(jobs_dir)
    runner = JobRunner(JobStore(db), config)
    _RUNNERS.append(runner)
    return runner


def test_jobs_start_on_the_standby_driver_which_is_replaced(
    cluster: LocalCluster, jobs_dir: Path, tmp_path: Path
) -> None:
    (jobs_dir / "who.py").write_text(
        "import os\n"
        "def main(client):\n"
        "    argv = open('/proc/self/cmdline', 'rb').read().split(b'\\0')\n"
        "    print('driver', os.getpid(), b'--standby' in argv, client.submit(abs, -3).result())\n"
    )
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    pids = []
    for _ in range(2):
        standby = runner._standby
        assert standby is not None and standby.poll() is None
        record = runner.wait(runner.submit("who.py", [], "t").id, 60)
        assert record.state == "done", runner.store.text(record.id, "stderr")
        out = runner.store.text(record.id, "stdout").split()
        assert out[0] == "driver" and out[2:] == ["True", "3"]
        assert int(out[1]) == standby.pid
        pids.append(standby.pid)
    assert pids[0] != pids[1]  # each job had its own process, the next standby took over
    spare = runner._standby
    assert spare is not None
    runner.close()
    assert spare.wait(5) == 0  # told to stop by end of input, not killed


@pytest.mark.parametrize(
    ("file", "args", "expect"),
    [
        ("pi.py", ["400000", "8"], "result: 3.1"),
        ("wordcount.py", [], "result: {'cluster': 1000"),
        ("mandelbrot.py", ["160", "120"], "mandelbrot.pgm"),
        ("primes.py", ["100000", "8"], "result: 9592"),
    ],
)
def test_example_jobs_run_and_check_themselves(
    cluster: LocalCluster, jobs_dir: Path, tmp_path: Path, file: str, args: list[str], expect: str
) -> None:
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    record = runner.submit(file, args, "tester@here")
    assert record.state == "queued"
    final = runner.wait(record.id, 120)
    out = runner.store.text(record.id, "stdout")
    assert final.state == "done", runner.store.text(record.id, "stderr")
    assert final.exit_status == 0
    assert final.submitter == "tester@here"
    assert final.args == args
    assert final.started is not None and final.finished is not None
    assert final.submitted <= final.started <= final.finished
    assert "check: ok" in out
    assert expect in out
    if file == "mandelbrot.py":
        image = (jobs_dir / "mandelbrot.pgm").read_bytes()
        assert image.startswith(b"P5\n160 120\n255\n")
        assert len(image) == len(b"P5\n160 120\n255\n") + 160 * 120
    if file == "wordcount.py":
        assert (jobs_dir / "wordcount-input" / "raspi.txt").is_file()


def test_script_using_connect(cluster: LocalCluster, jobs_dir: Path, tmp_path: Path) -> None:
    (jobs_dir / "script.py").write_text(
        "import sys\n"
        "import bramble.jobs\n"
        "client = bramble.jobs.connect()  # as the README says\n"
        "print('sum', client.submit(sum, [int(a) for a in sys.argv[1:]]).result())\n"
        "client.close()\n"
    )
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    record = runner.wait(runner.submit("script.py", ["1", "2", "39"], "t").id, 60)
    assert record.state == "done", runner.store.text(record.id, "stderr")
    assert "sum 42" in runner.store.text(record.id, "stdout")


def test_syntax_error_fails_with_traceback_and_harms_nothing(
    cluster: LocalCluster, jobs_dir: Path, tmp_path: Path
) -> None:
    (jobs_dir / "broken.py").write_text("def main(client):\n    return (1 +\n")
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    good = runner.submit("primes.py", ["10000", "4"], "t")
    bad = runner.wait(runner.submit("broken.py", [], "t").id, 60)
    assert bad.state == "failed"
    assert bad.exit_status == 1
    err = runner.store.text(bad.id, "stderr")
    assert "SyntaxError" in err and "broken.py" in err and "Traceback" in err
    ok = runner.wait(good.id, 60)
    assert ok.state == "done" and "result: 1229" in runner.store.text(ok.id, "stdout")
    with cluster.client() as c:
        assert len(c.scheduler_info()["workers"]) == 2
        assert c.submit(lambda: 7).result() == 7


def test_missing_file_is_refused(cluster: LocalCluster, jobs_dir: Path, tmp_path: Path) -> None:
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    with pytest.raises(JobFileError, match="no such job file"):
        runner.submit("nope.py", [], "t")
    assert runner.store.list_jobs() == []


def test_cancel_long_job(cluster: LocalCluster, jobs_dir: Path, tmp_path: Path) -> None:
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    record = runner.submit("sleepy.py", ["200", "1"], "t")
    deadline = time.monotonic() + 30
    while "started" not in runner.store.text(record.id, "stdout"):
        assert time.monotonic() < deadline, runner.store.text(record.id, "stderr")
        time.sleep(0.1)
    assert runner.store.get(record.id).state == "running"
    t0 = time.monotonic()
    assert runner.cancel(record.id).state == "cancelled"
    final = runner.wait(record.id, 20)
    assert time.monotonic() - t0 < 10
    assert final.state == "cancelled" and final.finished is not None
    # The scheduler forgets the cancelled job's tasks once its client is gone.
    with cluster.client() as c:
        deadline = time.monotonic() + 15
        while c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) > 0:
            assert time.monotonic() < deadline, "cancelled tasks still on the scheduler"
            time.sleep(0.2)


def test_worker_killed_mid_job_job_completes(
    cluster: LocalCluster, jobs_dir: Path, tmp_path: Path
) -> None:
    spare = cluster.start("worker", "node-3")
    cluster.wait_workers(3)
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    record = runner.submit("sleepy.py", ["30", "0.5"], "t")
    deadline = time.monotonic() + 30
    with cluster.client() as c:
        # Kill node-3 once it is running tasks of the job.
        while True:
            assert time.monotonic() < deadline
            busy = c.run(lambda dask_worker: len(dask_worker.state.executing), on_error="ignore")
            addr = next(
                (a for a, w in c.scheduler_info()["workers"].items() if w["name"] == "node-3"), None
            )
            if addr and busy.get(addr, 0) > 0:
                break
            time.sleep(0.05)
    spare.kill()
    spare.wait()
    final = runner.wait(record.id, 120)
    assert final.state == "done", runner.store.text(record.id, "stderr")
    assert "check: ok" in runner.store.text(record.id, "stdout")
    cluster.procs.pop("node-3")


def test_restart_fails_unfinished_jobs(tmp_path: Path, cluster: LocalCluster) -> None:
    store = JobStore(tmp_path / "jobs.db")
    stuck = store.create("/x.py", [], "t", time.time())
    _RUNNERS.append(JobRunner(store, cluster.config(tmp_path)))
    record = store.get(stuck.id)
    assert record.state == "failed" and "restarted" in (record.error or "")


def test_main_job_skips_its_script_block_and_ships_local_functions(
    cluster: LocalCluster, jobs_dir: Path, tmp_path: Path
) -> None:
    (jobs_dir / "both.py").write_text(
        "class Box:\n"
        "    def __init__(self, v):\n"
        "        self.v = v\n"
        "def twice(x):\n"
        "    return Box(2 * x)\n"
        "def main(client, n):\n"
        "    boxes = client.gather(client.map(twice, range(int(n))))\n"
        "    return sum(b.v for b in boxes) + client.submit(lambda: 1).result()\n"
        "if __name__ == '__main__':\n"
        "    raise SystemExit('script block must not run under bramble')\n"
    )
    runner = make_runner(cluster, jobs_dir, tmp_path / "jobs.db")
    record = runner.wait(runner.submit("both.py", ["10"], "t").id, 60)
    assert record.state == "done", runner.store.text(record.id, "stderr")
    assert "result: 91" in runner.store.text(record.id, "stdout")
