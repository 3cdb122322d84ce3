"""The lab's supervisor: restarts a lab daemon that exits while it is wanted.

Each supervised daemon has `<name>.argv` (its command line, JSON) in the lab's run directory
while it is wanted; `lab stop`/`down` remove that file before they end the process, under the
run directory's lock, so a deliberate stop is never undone. A daemon that keeps dying is
restarted at most once every few seconds. The supervisor exits on SIGTERM or when the lab's
state directory goes away.

Run: python -m bramble.lab.supervise RUN_DIR
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from bramble.lab import daemons

log = logging.getLogger(__name__)

SCAN_EVERY = 0.5
BACKOFF = 3.0


def scan(run_dir: Path, last_start: dict[str, float], now: float) -> list[str]:
    """Restart every wanted daemon that is not running (with backoff); the names restarted."""
    restarted = []
    with daemons.locked(run_dir):
        for wanted in sorted(run_dir.glob("*.argv")):
            name = wanted.name.removesuffix(".argv")
            if daemons.running(run_dir, name) is not None:
                continue
            if now - last_start.get(name, 0.0) < BACKOFF:
                continue
            try:
                argv = json.loads(wanted.read_text())
            except (OSError, ValueError):
                continue
            last_start[name] = now
            pid = daemons.start(run_dir, name, argv)
            log.warning("%s had exited: restarted (pid %d)", name, pid)
            restarted.append(name)
    return restarted


def main(argv: list[str] | None = None) -> int:
    """Watch RUN_DIR until SIGTERM or until it is removed."""
    args = sys.argv[1:] if argv is None else argv
    run_dir = Path(args[0])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    stopping: list[int] = []

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    last_start: dict[str, float] = {}
    while not stopping and run_dir.is_dir():
        try:
            scan(run_dir, last_start, time.monotonic())
        except OSError as exc:
            log.warning("scan failed: %s", exc)
        time.sleep(SCAN_EVERY)
    return 0


if __name__ == "__main__":
    sys.exit(main())
