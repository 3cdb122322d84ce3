"""The lab's edges to the kernel: namespaces and links through iproute2 commands."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from ipaddress import IPv4Network

from bramble.errors import BrambleError, MissingToolError

log = logging.getLogger(__name__)

# Each program the lab runs, and the Debian package that provides it.
TOOLS = {
    "ip": "iproute2",
    "dnsmasq": "dnsmasq-base",
    "nft": "nftables",
    "ganesha.nfsd": "nfs-ganesha + nfs-ganesha-vfs",
    "nfs-cat": "libnfs-utils",
    "busybox": "busybox",
    "nsenter": "util-linux",
    "unshare": "util-linux",
}


def missing_tool(search: str | None = None) -> MissingToolError | None:
    """The system tools the lab needs that are not on SEARCH (default: $PATH and sbin), all
    in one error; None when every one is there."""
    if search is None:
        search = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    missing = [(t, p) for t, p in TOOLS.items() if shutil.which(t, path=search) is None]
    if not missing:
        return None
    (tool, package), *more = missing
    return MissingToolError(tool, package, more)


def require_tools() -> None:
    """Raise MissingToolError naming every missing tool."""
    error = missing_tool()
    if error is not None:
        raise error


def run(args: Sequence[str], *, check: bool = True, timeout: float = 30) -> str:
    """Run ARGS; its stdout, or BrambleError with its stderr when it fails and CHECK."""
    log.debug("run %s", " ".join(args))
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise BrambleError(f"{' '.join(args)}: {message[-1] if message else proc.returncode}")
    return proc.stdout


def ip(*args: str, ns: str | None = None, check: bool = True) -> str:
    """Run `ip [-n NS] ARGS`."""
    return run(["ip", *(["-n", ns] if ns else []), *args], check=check)


def batch(lines: Sequence[str], *, ns: str | None = None) -> None:
    """Run many `ip` commands in one process (`ip -batch -`): fast for big labs."""
    if not lines:
        return
    args = ["ip", *(["-n", ns] if ns else []), "-batch", "-"]
    proc = subprocess.run(args, input="\n".join(lines) + "\n", capture_output=True, text=True)
    if proc.returncode != 0:
        raise BrambleError(f"ip -batch: {proc.stderr.strip().splitlines()[-1:]}")


def namespaces() -> list[str]:
    """Every named network namespace."""
    out = run(["ip", "-j", "netns", "list"], check=False).strip()
    if not out:
        return []
    return [entry["name"] for entry in json.loads(out)]


def ns_pids(ns: str) -> list[int]:
    """The processes whose network namespace is NS."""
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def root_networks() -> set[IPv4Network]:
    """The IPv4 networks of the root namespace's addresses (the lab must not overlap them)."""
    out = run(["ip", "-j", "-4", "addr"], check=False).strip() or "[]"
    nets: set[IPv4Network] = set()
    for link in json.loads(out):
        for addr in link.get("addr_info", []):
            nets.add(IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return nets


def link_exists(name: str, ns: str | None = None) -> bool:
    """Whether the link NAME exists (in NS, or the root namespace)."""
    return bool(ip("-j", "link", "show", "dev", name, ns=ns, check=False).strip())


def kill_pids(pids: Sequence[int], timeout: float = 3.0) -> None:
    """SIGTERM PIDS, wait up to TIMEOUT, then SIGKILL what is left."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [p for p in left if _alive(p)]
        if left:
            time.sleep(0.05)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def alive(pid: int) -> bool:
    """Whether PID is a running (not zombie) process."""
    return _alive(pid)


def delete_namespace(ns: str) -> None:
    """Kill every process in NS, then delete it (its links go with it)."""
    for _ in range(3):
        pids = ns_pids(ns)
        if not pids:
            break
        kill_pids(pids)
    ip("netns", "delete", ns, check=False)
