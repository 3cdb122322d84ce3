"""The wheels: their size, the agent's program in each, and how long installing one takes.

Builds the x86_64, aarch64 and armv7l wheels with scripts/build-wheels (Debian's cross
compilers) and, for comparison, the pure wheel a machine without a compiler makes
(BRAMBLE_AGENT_BUILD=none). Then installs this machine's wheel, no extras, into a fresh venv
(no system site-packages) ROUNDS times, after one untimed install that fills pip's cache:
the times are with a warm cache (every dependency a cached download, nothing built).

    python bench/wheel.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "out"
)


def build(tree: Path, out: Path) -> list[Path]:
    """The three platform wheels and the pure one, into OUT."""
    subprocess.run([str(tree / "scripts" / "build-wheels"), "-o", str(out)], check=True)
    pure = out / "pure"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(pure), str(tree)],
        env={**os.environ, "BRAMBLE_AGENT_BUILD": "none"},
        check=True,
    )
    return sorted(out.glob("*.whl")) + sorted(pure.glob("*.whl"))


def install_seconds(wheel: Path, work: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, every process) to make a fresh venv and
    `pip install` WHEEL into it."""
    venv = work / "venv"
    shutil.rmtree(venv, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> None:
    """Build, measure, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bramble-wheels-") as tmp:
        work = Path(tmp)
        tree = work / "src"
        shutil.copytree(ROOT, tree, ignore=SKIP)
        wheels = build(tree, work / "dist")
        print(f"{'wheel':<100}  {'KiB':>6}  {'agent KiB':>9}")
        for wheel in wheels:
            with zipfile.ZipFile(wheel) as archive:
                names = archive.namelist()
                program = "bramble/telemetry/bramble-agent"
                agent = archive.getinfo(program).file_size / 1024 if program in names else 0
            print(f"{wheel.name:<100}  {wheel.stat().st_size / 1024:6.0f}  {agent:9.0f}")

        here = {"x86_64": "x86_64", "aarch64": "aarch64", "armv7l": "armv7l"}[platform.machine()]
        (mine,) = [w for w in wheels if f"manylinux_2_17_{here}." in w.name]
        first = install_seconds(mine, work)
        rounds = [install_seconds(mine, work) for _ in range(args.rounds)]
        walls, cpus = [r[0] for r in rounds], [r[1] for r in rounds]
        packages = len(list((work / "venv").glob("lib/python3*/site-packages/*.dist-info")))
        size = sum(f.stat().st_size for f in (work / "venv" / "lib").rglob("*") if f.is_file())
        print(
            f"fresh venv + pip install of the {here} wheel, no extras ({packages} distributions,"
            f" {size / 2**20:.0f} MiB installed): first (filling pip's cache as needed)"
            f" {first[0]:.1f} s; then, warm cache, median of {args.rounds}:"
            f" {statistics.median(walls):.1f} s wall ({', '.join(f'{t:.1f}' for t in walls)}),"
            f" {statistics.median(cpus):.1f} s CPU ({', '.join(f'{t:.1f}' for t in cpus)})"
        )
        cache = subprocess.run(
            [sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True
        )
        print(f"pip cache: {cache.stdout.strip()}")
    print(f"load average: {Path('/proc/loadavg').read_text().split()[:3]}, cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
