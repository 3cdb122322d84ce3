"""Lab benchmark: how long a node takes to install bramble from the master.

It brings up a one-node lab (`bramble lab up --nodes 1 --no-jobs`), fills the master's wheels
directory with `bramble wheels fetch --platform <this machine>` (pip's cache on the host),
asks the master once for its requirement (so its own wheel is made before timing), cuts the
node off from everything but the cluster LAN, then runs the rendered node installer in the
node RUNS times, emptying the node's /opt/bramble before each run, and reports:
  - install: seconds for the whole installer (venv with pip, then pip install from the master),
  - venv: seconds for `python3 -m venv` alone in the node (the part that is not bramble's),
  - already installed: seconds for a run that finds the master's version in place.
Then `bramble lab down`. Needs root and the lab's system tools.

Run: python bench/node_install.py [--runs 3] [--prefix nbench]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

from bramble.lab import commands, daemons
from bramble.lab import install as lab_install


def bramble(*args: str) -> str:
    """Run the real CLI; its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", "bramble", *args], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0:
        raise SystemExit(f"bramble {' '.join(args)}: {proc.stdout}{proc.stderr}")
    return proc.stdout


def empty(directory: os.PathLike[str]) -> None:
    """Remove what is in DIRECTORY, keeping it (the node has it bind-mounted)."""
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefix", default="nbench")
    args = parser.parse_args()
    bramble("lab", "up", "--nodes", "1", "--prefix", args.prefix, "--port", "0", "--no-jobs")
    try:
        lab = commands.load_lab(args.prefix)
        node = lab.plan.nodes[0].name
        bramble("wheels", "fetch", "--platform", platform.machine(), "--spec", str(lab.spec_path))
        started = time.monotonic()
        requirement = lab_install.master_requirement(lab)
        first = time.monotonic() - started
        wheels = list((lab.plan.state / "master" / "wheels").glob("*.whl"))
        size = sum(w.stat().st_size for w in wheels)
        lab_install.offline(lab, node)
        assert lab_install.is_offline(lab, node)
        venv = lab_install.venv_dir(lab, node)
        installs, venvs = [], []
        holder = daemons.running(lab.plan.state / "run", f"{node}.init")
        assert holder is not None
        for _ in range(args.runs):
            empty(venv)
            begun = time.monotonic()
            subprocess.run(
                daemons.in_node(holder, [lab_install.BOARD_PYTHON, "-m", "venv", "/opt/bramble"]),
                check=True,
            )
            venvs.append(time.monotonic() - begun)
            empty(venv)
            seconds, out = lab_install.run_installer(lab, node, tries=1)
            if out.returncode != 0:
                raise SystemExit(out.stderr)
            installs.append(seconds)
        again, out = lab_install.run_installer(lab, node, tries=1)
        assert "as on the master" in out.stderr, out.stderr
    finally:
        bramble("lab", "down", "--prefix", args.prefix)
    print(
        f"node install from the master: {requirement}, {len(wheels) + 1} wheels "
        f"({size / 1e6:.1f} MB of dependencies), node offline but for the cluster LAN"
    )
    print(f"  master's first /dist/requirement (makes its own wheel): {first:.1f} s")
    print(
        f"  install (venv + pip from the master), {args.runs} runs: "
        + ", ".join(f"{s:.1f}" for s in installs)
        + f" s; median {statistics.median(installs):.1f} s"
    )
    print(f"  of which python3 -m venv alone: median {statistics.median(venvs):.1f} s")
    print(f"  already installed (one request, nothing to do): {again:.2f} s")


if __name__ == "__main__":
    main()
