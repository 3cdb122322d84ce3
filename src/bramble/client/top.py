"""`bramble top`: the live node table in a terminal, fed by the master's event stream."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from bramble.client.http import MasterClient
from bramble.client.status import SEVERITY_STYLE, STATUS_STYLE, age

log = logging.getLogger(__name__)

BAR_WIDTH = 12


def parse_sse(lines: Iterable[str]) -> Iterator[tuple[str, str]]:
    """Server-sent events from LINES as (event, data); comments and retry hints are skipped."""
    event, data = "message", list[str]()
    for line in lines:
        if line == "":
            if data:
                yield event, "\n".join(data)
            event, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


class TopState:
    """What the terminal shows: the latest view of every node, stats, and whether it is live."""

    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}  # firing, by fingerprint
        self.stats: dict[str, Any] = {}
        self.connected = False
        self.error = ""
        self.lock = threading.Lock()

    def apply(self, event: str, data: Any) -> None:
        """Take one decoded event of the stream."""
        with self.lock:
            if event == "snapshot":
                self.nodes = {n["name"]: n for n in data["nodes"]}
                self.alerts = {
                    a["fingerprint"]: a for a in data.get("alerts", []) if a["state"] == "firing"
                }
                self.stats = data.get("stats", {})
                self.connected = True
                self.error = ""
            elif event == "nodes":
                for node in data:
                    self.nodes[node["name"]] = node
            elif event == "stats":
                self.stats = data
            elif event == "alert":
                if data["state"] == "firing":
                    self.alerts[data["fingerprint"]] = data
                else:
                    self.alerts.pop(data["fingerprint"], None)


def cpu_bar(fraction: float, width: int = BAR_WIDTH) -> Text:
    """A horizontal bar for a 0..1 fraction, coloured by how busy it is."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    colour = "green" if fraction < 0.6 else "yellow" if fraction < 0.85 else "red"
    bar = Text("█" * filled, style=colour)
    bar.append("░" * (width - filled), style="dim")
    bar.append(f" {fraction * 100:5.1f}%")
    return bar


def render(state: TopState, base: str, now: float) -> Group:
    """The table for STATE at time NOW (a pure function of the state)."""
    with state.lock:
        nodes = sorted(state.nodes.values(), key=lambda n: n["name"])
        stats = dict(state.stats)
        alerts = list(state.alerts.values())
        connected, error = state.connected, state.error
    table = Table(expand=True, pad_edge=False)
    for header, justify in (
        ("node", "left"), ("status", "left"), ("cpu", "left"), ("temp", "right"),
        ("memory", "right"), ("load", "right"), ("last seen", "right"), ("alerts", "left"),
    ):  # fmt: skip
        table.add_column(header, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    firing: dict[str, Text] = {}
    for alert in sorted(alerts, key=lambda a: a["rule"]):
        text = firing.setdefault(alert["node"], Text())
        text.append(("" if not text else " ") + alert["rule"],
                    style=SEVERITY_STYLE.get(alert["severity"], ""))  # fmt: skip
    for node in nodes:
        sample = node.get("sample") or {}
        metrics = node.get("metrics") or {}
        total, used = metrics.get("mem_total", 0), metrics.get("mem_used", 0)
        load = sample.get("loadavg") or [0.0, 0.0, 0.0]
        status = node["status"]
        live = status == "up" and connected
        dim = "" if live else "dim"
        table.add_row(
            Text(node["name"], style="bold" if live else "dim")
            + ("" if node.get("signed", True) else Text(" unsigned", style="yellow")),
            Text(status.upper() if status != "up" else "up", style=f"bold {STATUS_STYLE[status]}"),
            cpu_bar(sample.get("cpuusage", 0.0)) if live else Text("-" * BAR_WIDTH, style="dim"),
            Text(f"{sample['cputemp']:.1f} °C" if sample.get("cputemp") else "-", style=dim),
            Text(f"{used / 1024:.0f}/{total / 1024:.0f} MiB" if total else "-", style=dim),
            Text(f"{load[0]:.2f}", style=dim),
            Text(age(max(0.0, now - node["last_seen"])), style="" if live else "bold"),
            firing.get(node["name"]) or Text("-", style="dim"),
        )
    counts = {s: sum(1 for n in nodes if n["status"] == s) for s in STATUS_STYLE}
    head = Text(f"bramble top  {base}  ", style="bold")
    for status, count in counts.items():
        head.append(f"{count} {status}  ", style=STATUS_STYLE[status])
    if alerts:
        head.append(f"{len(alerts)} alert{'s' if len(alerts) != 1 else ''} firing  ",
                    style="bold red")  # fmt: skip
    if stats:
        head.append(f"{stats.get('rate', 0):.0f} datagrams/s  ")
    head.append("q quits", style="dim")
    parts: list[Any] = [head]
    if not connected:
        parts.append(Text(f"connection lost — retrying ({error})", style="bold white on red"))
    parts.append(table)
    return Group(*parts)


def follow(base: str, state: TopState, stop: threading.Event) -> None:
    """Read the event stream into STATE until STOP, reconnecting after failures."""
    while not stop.is_set():
        try:
            timeout = httpx.Timeout(5.0, read=20.0)
            with httpx.stream("GET", base + "/api/events", timeout=timeout) as response:
                response.raise_for_status()
                for event, data in parse_sse(response.iter_lines()):
                    if stop.is_set():
                        return
                    state.apply(event, json.loads(data))
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            log.debug("event stream: %s", exc)
            with state.lock:
                state.connected = False
                state.error = type(exc).__name__
        stop.wait(2.0)


@contextlib.contextmanager
def cbreak(fd: int) -> Iterator[bool]:
    """Put the terminal FD in cbreak mode (keys without Enter) and restore it after."""
    if not os.isatty(fd):
        yield False
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_top(base: str) -> None:
    """Show the master at BASE's live node table until q (or Ctrl-C); MasterUnreachableError
    if no master answers."""
    with MasterClient(base, hint=", or pass --url") as master:
        master.get("/api/stats", timeout=5)  # fails clearly when there is no master
    state = TopState()
    stop = threading.Event()
    reader = threading.Thread(target=follow, args=(base, state, stop), daemon=True)
    reader.start()
    fd = sys.stdin.fileno()
    try:
        with cbreak(fd) as keys, Live(render(state, base, time.time()), screen=False) as live:
            while True:
                if keys:
                    ready, _, _ = select.select([fd], [], [], 0.25)
                    if ready and os.read(fd, 1).lower() == b"q":
                        break
                else:
                    time.sleep(0.25)
                live.update(render(state, base, time.time()))
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
