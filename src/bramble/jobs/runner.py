"""The master's job runner: one driver subprocess per job, output captured into the store.

A submitted job is recorded as ``queued``; a thread waits for a free slot (at most
``max_running`` drivers at once), marks it ``running`` and starts
``python -m bramble.jobs.driver FILE ARGS...`` in its own process group with the cluster's
scheduler and certificates in its environment. Reader threads append stdout and stderr to
the record as they arrive, so `bramble logs --follow` sees output live. Exit status 0 is
``done``, anything else ``failed``; `cancel` terminates the driver's process group (the Dask
client closes, so the scheduler drops the job's tasks) and records ``cancelled``.

One driver waits on standby with the Dask client's modules imported (`driver.standby`), so a
job starts without waiting for that import; it is handed its job on stdin (with the client
certificate it connects with), and another standby is started when a job ends.

Job files must be inside the jobs directory (after following symlinks). Drivers never run as
root: a master running as root starts them as the unprivileged user `bramble` (see
`account`); otherwise they run as the master's own user. Submitting needs the admin token.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bramble.cluster import ENV_SPEC
from bramble.errors import BrambleError
from bramble.jobs.account import Account, job_account
from bramble.jobs.config import ENV_SCHEDULER, JobsConfig
from bramble.jobs.store import JobRecord, JobStore, Stream
from bramble.jobs.tls import TlsError

log = logging.getLogger(__name__)

MAX_OUTPUT = 16 * 1024 * 1024
KILL_GRACE = 5.0


class JobFileError(BrambleError):
    """The job file does not exist, is not a regular file, or is outside the jobs directory."""


@dataclass
class _Running:
    proc: subprocess.Popen[bytes] | None = None
    cancelled: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class JobRunner:
    """Runs jobs for the master; thread-safe."""

    def __init__(self, store: JobStore, config: JobsConfig, *, max_running: int = 4) -> None:
        self.store = store
        self.config = config
        self._slots = threading.Semaphore(max_running)
        self._lock = threading.Lock()
        self._jobs: dict[int, _Running] = {}
        self._closed = False
        self._standby: subprocess.Popen[bytes] | None = None
        self.account: Account | None = job_account()
        self._refill()
        failed = store.fail_unfinished(time.time(), "the master restarted while the job ran")
        if failed:
            log.warning("marked %d jobs of a previous master run as failed", failed)

    def resolve(self, file: str) -> Path:
        """The job file FILE (relative names are under the jobs directory), symlinks followed.

        JobFileError unless it is a regular file inside the jobs directory.
        """
        jobs_dir = self.config.jobs_dir.resolve()
        path = (jobs_dir / file).resolve()  # an absolute FILE replaces jobs_dir
        if not path.is_relative_to(jobs_dir):
            raise JobFileError(
                f"{file}: not inside the jobs directory {jobs_dir} (put the job file there)"
            )
        if not path.is_file():
            raise JobFileError(f"{file}: no such job file in the jobs directory {jobs_dir}")
        return path

    def submit(self, file: str, args: list[str], submitter: str) -> JobRecord:
        """Record a job and start it when a slot is free."""
        path = self.resolve(file)
        record = self.store.create(str(path), args, submitter, time.time())
        state = _Running()
        with self._lock:
            self._jobs[record.id] = state
        thread = threading.Thread(
            target=self._run, args=(record.id, path, args, state), daemon=True
        )
        thread.start()
        log.info("job %d queued: %s %s (by %s)", record.id, path, args, submitter)
        return record

    def cancel(self, job_id: int) -> JobRecord:
        """Cancel a queued or running job; a finished job is returned unchanged."""
        record = self.store.get(job_id)
        with self._lock:
            state = self._jobs.get(job_id)
        if state is None or record.state not in ("queued", "running"):
            return record
        state.cancelled = True
        self.store.finish(job_id, "cancelled", time.time())
        proc = state.proc
        if proc is not None and proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            threading.Thread(target=self._reap, args=(proc,), daemon=True).start()
        log.info("job %d cancelled", job_id)
        return self.store.get(job_id)

    def wait(self, job_id: int, timeout: float | None = None) -> JobRecord:
        """Block until the job is finished (or TIMEOUT passes); return its record."""
        with self._lock:
            state = self._jobs.get(job_id)
        if state is not None:
            state.done.wait(timeout)
        return self.store.get(job_id)

    def close(self) -> None:
        """Cancel every job still queued or running (the master is stopping)."""
        self._closed = True
        with self._lock:
            ids = [i for i, s in self._jobs.items() if not s.done.is_set()]
            spare, self._standby = self._standby, None
        if spare is not None:
            _retire(spare)
        for job_id in ids:
            self.cancel(job_id)
        for job_id in ids:
            self.wait(job_id, KILL_GRACE + 1)

    # --- the job's own thread ---------------------------------------------------------

    def _job_env(self, job_id: int) -> dict[str, str]:
        env = {"BRAMBLE_JOB_ID": str(job_id), ENV_SCHEDULER: self.config.scheduler}
        if self.config.spec_path is not None:
            env[ENV_SPEC] = str(self.config.spec_path)
        return env

    def _env(self, job_id: int) -> dict[str, str]:
        account = self.account.env() if self.account is not None else {}
        return {**os.environ, "PYTHONUNBUFFERED": "1", **account, **self._job_env(job_id)}

    def _spawn(self) -> subprocess.Popen[bytes]:
        """A driver waiting for its job on stdin, as the job account."""
        user = self.account
        return subprocess.Popen(
            [sys.executable, "-m", "bramble.jobs.driver", "--standby"],
            env=self._env(0),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            cwd="/",
            user=user.uid if user is not None else None,
            group=user.gid if user is not None else None,
            extra_groups=[] if user is not None else None,
        )

    def _refill(self) -> None:
        """Start a standby driver if there is none (and the runner is open)."""
        with self._lock:
            if self._closed or (self._standby is not None and self._standby.poll() is None):
                return
            try:
                self._standby = self._spawn()
            except OSError as exc:
                log.warning("no standby job driver: %s", exc)
                self._standby = None

    def _start_driver(self, job_id: int, path: Path, args: list[str]) -> subprocess.Popen[bytes]:
        """The standby driver handed this job (a new one when none is ready)."""
        tls = self.config.tls.material("client") if self.config.tls is not None else None
        job = {
            "file": str(path),
            "args": args,
            "cwd": str(path.parent),
            "env": self._job_env(job_id),
            "tls": {"ca": tls.ca, "cert": tls.cert, "key": tls.key} if tls is not None else None,
        }
        line = (json.dumps(job) + "\n").encode()
        with self._lock:
            proc, self._standby = self._standby, None
        if proc is not None and _hand(proc, line):
            return proc
        proc = self._spawn()
        if not _hand(proc, line):
            raise OSError("the job driver exited before it was given its job")
        return proc

    def _run(self, job_id: int, path: Path, args: list[str], state: _Running) -> None:
        try:
            with self._slots:
                if state.cancelled or self._closed:
                    return
                if not self.store.mark_running(job_id, time.time()):
                    return
                self._drive(job_id, path, args, state)
        except TlsError as exc:
            self.store.finish(job_id, "failed", time.time(), error=str(exc))
        except Exception as exc:
            log.exception("job %d: runner error", job_id)
            self.store.finish(job_id, "failed", time.time(), error=f"runner error: {exc}")
        finally:
            self._refill()
            with self._lock:
                self._jobs.pop(job_id, None)
            state.done.set()

    def _drive(self, job_id: int, path: Path, args: list[str], state: _Running) -> None:
        proc = self._start_driver(job_id, path, args)
        state.proc = proc
        if state.cancelled:
            _signal_group(proc, signal.SIGTERM)
        budget = [MAX_OUTPUT]
        readers = [
            threading.Thread(
                target=self._pump, args=(job_id, proc.stdout, "stdout", budget), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(job_id, proc.stderr, "stderr", budget), daemon=True
            ),
        ]
        for reader in readers:
            reader.start()
        rc = proc.wait()
        for reader in readers:
            reader.join(10)
        status = rc if rc >= 0 else 128 - rc
        if state.cancelled:
            self.store.finish(job_id, "cancelled", time.time(), exit_status=status)
        elif rc == 0:
            self.store.finish(job_id, "done", time.time(), exit_status=0)
        else:
            self.store.finish(job_id, "failed", time.time(), exit_status=status)
        log.info("job %d ended with status %d", job_id, status)

    def _pump(self, job_id: int, pipe: IO[bytes], stream: Stream, budget: list[int]) -> None:
        """Append what the driver writes on PIPE to the job's output, until its end; close it."""
        with pipe:
            fd = pipe.fileno()
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            while True:
                data = os.read(fd, 65536)
                text = decoder.decode(data, final=not data)
                if text and budget[0] > 0:
                    if len(text) > budget[0]:
                        text = text[: budget[0]] + "\n[bramble: output truncated]\n"
                    budget[0] -= len(text)
                    self.store.append_output(job_id, stream, text, time.time())
                if not data:
                    break

    def _reap(self, proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.wait(KILL_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)


def _hand(proc: subprocess.Popen[bytes], line: bytes) -> bool:
    """Give a waiting driver its job; False (and the driver retired) if it is gone."""
    if proc.poll() is None and proc.stdin is not None:
        try:
            proc.stdin.write(line)
            proc.stdin.close()
            return True
        except OSError:
            pass
    _retire(proc)
    return False


def _retire(proc: subprocess.Popen[bytes]) -> None:
    """End a standby driver: end of input tells it to exit; kill it if it lingers."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(2)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
