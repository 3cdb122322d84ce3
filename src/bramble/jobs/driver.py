"""The job driver: the process the master starts for one job (`python -m bramble.jobs.driver`).

A job file either defines ``main(client, *args)`` at top level, in which case the driver
imports it, connects to the cluster and calls ``main`` (printing a non-None result), or it is a
plain script (usually calling `bramble.jobs.connect()` itself), which runs as ``__main__``.
Errors, syntax errors included, end the process with exit status 1 and the error on stderr as
`python FILE` would show it: the driver's own frames are left out.
"""

from __future__ import annotations

import ast
import contextlib
import os
import runpy
import signal
import sys
import traceback
from pathlib import Path
from types import FrameType, ModuleType

JOB_MODULE = "__bramble_job__"


def defines_main(source: str, filename: str) -> bool:
    """Whether SOURCE defines a top-level ``main`` function (raises SyntaxError if invalid)."""
    tree = ast.parse(source, filename=filename)
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "main"
        for node in tree.body
    )


def load_job_module(file: Path, source: str) -> ModuleType:
    """Execute the job file, then make it this process's ``__main__`` module.

    The file runs with ``__name__ == "__bramble_job__"`` so an ``if __name__ == "__main__"``
    block does not run; afterwards the module becomes ``__main__`` and its top-level functions
    and classes say so. Workers cannot import the job file, and Dask sends ``__main__`` code by
    value cheaply, exactly as for a plain Dask script; code of an unimportable module instead
    takes Dask's slow fallback path once per task (measurable with 1,000 tiny tasks).
    """
    module = ModuleType(JOB_MODULE)
    module.__file__ = str(file)
    exec(compile(source, str(file), "exec"), module.__dict__)
    module.__name__ = "__main__"
    for value in list(module.__dict__.values()):
        if getattr(value, "__module__", None) == JOB_MODULE:
            with contextlib.suppress(AttributeError, TypeError):
                value.__module__ = "__main__"
    sys.modules["__main__"] = module
    return module


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Unwind normally so the Dask client closes and the scheduler drops this job's tasks.
    raise SystemExit(128 + signum)


def run_job(file: Path, args: list[str]) -> int:
    """Run the job FILE with ARGS; return the exit status."""
    source = file.read_text(encoding="utf-8")
    has_main = defines_main(source, str(file))
    sys.argv = [str(file), *args]
    sys.path.insert(0, str(file.parent))
    if not has_main:
        runpy.run_path(str(file), run_name="__main__")
        return 0
    module = load_job_module(file, source)
    from bramble.jobs.dask import connect

    with connect() as client:
        result = module.main(client, *args)
    if result is not None:
        print(f"result: {result!r}", flush=True)
    return 0


def standby() -> tuple[Path, list[str]] | None:
    """Wait, with the Dask client's modules already imported, for the job to run.

    The master keeps one driver waiting like this, so a job does not wait for the import of
    `distributed` (about half a second on a desktop, seconds on a Raspberry Pi). The job comes
    as one JSON line on stdin: ``{"file", "args", "cwd", "env", "tls"}`` (``tls``: the client
    certificate and key as PEM text, which this unprivileged process could not read itself);
    end of input (the master went away or no longer needs it) ends the process quietly.
    """
    import json

    import distributed  # noqa: F401  # the import the job would otherwise wait for

    import bramble.jobs.dask  # noqa: F401
    from bramble.jobs.dask import use_client_material
    from bramble.jobs.tls import TlsMaterial

    line = sys.stdin.readline()
    if not line.strip():
        return None
    job = json.loads(line)
    os.environ.update(job["env"])
    os.chdir(job["cwd"])
    tls = job.get("tls")
    use_client_material(TlsMaterial(**tls) if tls else None)
    return Path(job["file"]), [str(a) for a in job["args"]]


def user_traceback(exc: BaseException, file: Path) -> str:
    """EXC as `python FILE` would show it: from the job file's first frame on.

    The driver's own frames (and runpy's) come first in the traceback and are the user's
    concern no more than the interpreter's; a syntax error in the job shows, as Python
    shows it, only where it is.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != str(file):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))


def _run(file: Path, args: list[str]) -> int:
    try:
        return run_job(file, args)
    except Exception as exc:
        sys.stderr.write(user_traceback(exc, file))
        sys.stderr.flush()
        return 1


def main() -> None:
    """Entry point: ``python -m bramble.jobs.driver FILE [ARGS...]`` (or ``--standby``)."""
    signal.signal(signal.SIGTERM, _terminate)
    if sys.argv[1:] == ["--standby"]:
        job = standby()
        if job is None:
            raise SystemExit(0)
        raise SystemExit(_run(*job))
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m bramble.jobs.driver FILE [ARGS...]\n")
        raise SystemExit(2)
    raise SystemExit(_run(Path(sys.argv[1]), sys.argv[2:]))


if __name__ == "__main__":
    main()
