"""The job driver shows a job's error as `python FILE` would, without its own frames."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BROKEN = "def main(client):\n    return (1 +\n"
FAILING = "import sys\n\n\ndef f(x):\n    return 1 / x\n\n\nprint('start')\nf(int(sys.argv[1]))\n"


def _stderr(*argv: str) -> tuple[int, str]:
    done = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stderr


@pytest.mark.parametrize(("source", "args"), [(BROKEN, []), (FAILING, ["0"])])
def test_a_jobs_error_reads_as_python_shows_it(
    tmp_path: Path, source: str, args: list[str]
) -> None:
    job = tmp_path / "job.py"
    job.write_text(source)
    code, shown = _stderr("-m", "bramble.jobs.driver", str(job), *args)
    assert code == 1
    assert "bramble/jobs/driver.py" not in shown and "runpy" not in shown
    _python_code, python_shows = _stderr(str(job), *args)
    assert shown == python_shows
    assert shown.splitlines()[-1] in (
        "SyntaxError: '(' was never closed",
        "ZeroDivisionError: division by zero",
    )
