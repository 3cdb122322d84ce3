"""What works and what does not: /api/health names each part of the master, and a history
store that cannot write (a full disk, a read-only one) is said there, counted in /api/stats and
/metrics, logged once with its traceback, while live data keeps serving."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, Sender, wait_for

pytestmark = [pytest.mark.slow]

PARTS = {"collector", "ticker", "history", "jobs"}


def test_health_names_every_part(start_master: Callable[..., Master]) -> None:
    master = start_master()
    health = master.api("/api/health")
    assert health["ok"] is True
    assert set(health["parts"]) >= PARTS
    assert all(part["ok"] for part in health["parts"].values())


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB filesystem of its own (tmpfs), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _two_nodes(master: Master) -> list[Sender]:
    """Node-1 and node-2 sending every 0.2 s until closed."""
    return [Sender(master, name, 0.2) for name in ("node-1", "node-2")]


@pytest.mark.root
def test_a_full_disk_is_reported_and_history_resumes(
    start_master: Callable[..., Master], small_disk: Path
) -> None:
    master = start_master(
        interval=0.2, tables={"history": f'path = "{small_disk / "history.db"}"\nflush_seconds = 1'}
    )
    senders = _two_nodes(master)
    try:
        wait_for(lambda: len(master.api("/api/nodes")) == 2, 10, "two nodes")
        filler = small_disk / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
        health = wait_for(
            lambda: (h := master.api("/api/health")) and not h["parts"]["history"]["ok"] and h,
            15,
            "health to say history cannot write",
        )
        assert health["ok"] is False
        assert "disk full" in health["parts"]["history"]["detail"]
        assert health["parts"]["collector"]["ok"] is True
        # live data keeps serving
        before = master.api("/api/nodes/node-1")["seq"]
        wait_for(lambda: master.api("/api/nodes/node-1")["seq"] > before + 5, 5, "live updates")
        metrics = httpx.get(master.base + "/metrics", timeout=5).text
        assert 'bramble_errors_total{part="history"}' in metrics
        assert 'bramble_part_up{part="history"} 0.0' in metrics
        assert "history: disk full" in master.stats()["problems"]  # the page's banner
        wait_for(lambda: master.stats()["errors"]["history"] >= 3, 10, "the writer still trying")
        assert master.processes.log(master.name).count("Traceback") <= 1
        # when space comes back, so does history
        filler.unlink()
        wait_for(lambda: master.api("/api/health")["ok"], 15, "history writing again")
    finally:
        for sender in senders:
            sender.close()


@pytest.mark.root
def test_a_read_only_store_is_reported_and_live_data_serves(
    start_master: Callable[..., Master], small_disk: Path
) -> None:
    master = start_master(
        interval=0.2, tables={"history": f'path = "{small_disk / "history.db"}"\nflush_seconds = 1'}
    )
    master.stop()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    master.start()
    senders = _two_nodes(master)
    try:
        wait_for(lambda: len(master.api("/api/nodes")) == 2, 10, "two nodes, live")
        health = master.api("/api/health")
        assert health["parts"]["history"]["ok"] is False
        assert "read-only" in health["parts"]["history"]["detail"]
    finally:
        for sender in senders:
            sender.close()


def test_a_failing_loop_goes_on_is_counted_and_logged_once_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import asyncio
    import sqlite3

    from bramble.master.health import Health
    from bramble.master.live import Live

    health = Health()
    rounds: list[int] = []

    def body() -> None:
        rounds.append(1)
        if len(rounds) <= 5:
            raise sqlite3.OperationalError("database or disk is full")

    async def run() -> None:
        live = Live.__new__(Live)  # only its loop runner: no table, history or hub
        live.health = health
        task = asyncio.create_task(live._every(0.01, "ticker", body))
        while len(rounds) < 8:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(run())
    view = health.view().parts["ticker"]
    assert view.ok and view.errors == 5  # failed five times, went on, works again
    assert health.errors() == {"ticker": 5}
    failures = [r for r in caplog.records if "ticker" in r.getMessage() and r.levelno >= 30]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert "disk full" in failures[0].getMessage()


def test_failures_say_why_in_words_a_user_can_act_on() -> None:
    import errno
    import sqlite3

    from bramble.master.health import describe

    assert describe(sqlite3.OperationalError("database or disk is full")) == "disk full"
    assert describe(OSError(errno.ENOSPC, "No space left on device")) == "disk full"
    assert describe(sqlite3.OperationalError("attempt to write a readonly database")) == (
        "read-only"
    )
    assert describe(OSError(errno.EROFS, "Read-only file system")) == "read-only"
    assert describe(PermissionError(13, "Permission denied")) == "permission denied"


def test_one_reason_is_one_kind_of_failure_whatever_raised_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full disk fails SQLite and a plain write alike: one traceback, not one per type."""
    import errno
    import sqlite3

    from bramble.master.health import Health

    health = Health()
    with caplog.at_level("WARNING"):
        health.failed("history", sqlite3.OperationalError("database or disk is full"))
        health.failed("history", OSError(errno.ENOSPC, "No space left on device"))
        health.failed("history", ValueError("something else"))
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert [type(r.exc_info[1]).__name__ for r in tracebacks if r.exc_info] == [
        "OperationalError",
        "ValueError",
    ]
    assert health.view().parts["history"].errors == 3
