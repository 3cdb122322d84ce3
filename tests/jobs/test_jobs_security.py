"""Jobs against a real loopback master: job files stay inside the jobs directory, jobs never
run as root, their output needs the admin token, the databases are private, and the recorded
submitter is whoever authenticated."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from bramble_testing import Master, wait_for

pytestmark = [pytest.mark.slow]

WHOAMI = "import os, pwd\nprint('uid', os.getuid(), pwd.getpwuid(os.getuid()).pw_name)\n"


class Jobs:
    """A master whose jobs directory is readable by every user."""

    def __init__(self, start_master: Callable[..., Master], public_tmp: Path) -> None:
        self.dir = public_tmp / "jobs"
        self.dir.mkdir(mode=0o755)
        (self.dir / "whoami.py").write_text(WHOAMI)
        self.master = start_master(tables={"jobs": f'jobs_dir = "{self.dir}"'})
        self.base = self.master.base
        self.auth = {"Authorization": f"Bearer {self.master.secrets.admin_token}"}

    def submit(self, file: str, **extra: object) -> httpx.Response:
        body = {"file": file, **extra}
        return httpx.post(f"{self.base}/api/jobs", json=body, headers=self.auth, timeout=30)

    def output(self, job: int) -> str:
        def finished() -> dict[str, object] | None:
            logs = httpx.get(f"{self.base}/api/jobs/{job}/logs", headers=self.auth, timeout=10)
            view = logs.json()
            return view if view["finished"] else None

        view = wait_for(finished, 60, f"job {job} to finish")
        return "".join(str(c["data"]) for c in view["chunks"])


@pytest.fixture
def jobs(start_master: Callable[..., Master], public_tmp: Path) -> Jobs:
    return Jobs(start_master, public_tmp)


def test_a_job_file_outside_the_jobs_directory_is_refused(jobs: Jobs, public_tmp: Path) -> None:
    outside = public_tmp / "outside.py"
    outside.write_text(WHOAMI)
    (jobs.dir / "link.py").symlink_to(outside)
    (jobs.dir / "sub").mkdir(mode=0o755)
    (jobs.dir / "sub" / "inside.py").write_text(WHOAMI)
    for file in ("/etc/shadow", str(outside), "../outside.py", "link.py", "/etc/../etc/passwd"):
        response = jobs.submit(file)
        assert response.status_code == 400, file
        assert "jobs directory" in response.json()["detail"], file
    assert httpx.get(f"{jobs.base}/api/jobs", timeout=10).json() == []
    assert jobs.submit("sub/inside.py").status_code == 201
    assert jobs.submit(str(jobs.dir / "whoami.py")).status_code == 201


@pytest.mark.root
def test_a_job_never_runs_as_root(jobs: Jobs) -> None:
    if os.geteuid() != 0:
        pytest.skip("only a master running as root has a user to drop to")
    submitted = jobs.submit("whoami.py")
    assert submitted.status_code == 201, submitted.text
    output = jobs.output(submitted.json()["id"])
    uid, name = output.split()[1:3]
    assert int(uid) != 0 and name == "bramble", output


def test_job_output_and_exec_results_need_the_token(jobs: Jobs) -> None:
    job = jobs.submit("whoami.py").json()["id"]
    jobs.output(job)
    assert httpx.get(f"{jobs.base}/api/jobs/{job}/logs", timeout=10).status_code == 401
    assert httpx.get(f"{jobs.base}/api/execs", timeout=10).status_code == 401
    assert httpx.get(f"{jobs.base}/api/execs", headers=jobs.auth, timeout=10).status_code == 200
    # the job list stays open, as the dashboard shows it
    assert httpx.get(f"{jobs.base}/api/jobs", timeout=10).status_code == 200


def test_the_databases_are_private(jobs: Jobs) -> None:
    job = jobs.submit("whoami.py").json()["id"]
    jobs.output(job)
    time.sleep(1.5)  # a history batch
    state = Path(jobs.master.spec.history.path).parent
    files = sorted(p for p in state.iterdir() if ".db" in p.name)
    assert {p.name for p in files} >= {"history.db", "jobs.db"}
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path.name


def test_the_submitter_is_who_authenticated(jobs: Jobs) -> None:
    record = jobs.submit("whoami.py", submitter="mallory").json()
    assert record["submitter"] == "admin@127.0.0.1"
