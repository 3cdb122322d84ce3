"""The lab's boards have a Raspberry Pi's firmware flags, which a test or a class can set.

Each lab node's agent reads `get_throttled` from a small sysfs tree of its own
(`nodes/NAME/sys` in the lab's state, given to the agent as `--sys`) instead of the host's,
which has none. At power-on the flags are clear, as on a board with a good supply;
`bramble lab throttle NODE` sets them as the firmware would on a board that is too hot or on
a weak supply, and `--clear` ends that (the since-boot bits stay, as they do on a board), so
the whole path from the firmware to an alert can be seen without a Pi.
"""

from __future__ import annotations

import os
from pathlib import Path

from bramble.errors import BrambleError

THROTTLED_PATH = "devices/platform/soc/soc:firmware/get_throttled"
"""Where the firmware's flags are on a Raspberry Pi 4 (below /sys)."""

UNDERVOLTAGE = 0x1
FREQ_CAPPED = 0x2
THROTTLED = 0x4
SOFT_TEMP_LIMIT = 0x8
SINCE_BOOT = 16
"""Each flag's `... has occurred since boot` bit is the flag shifted this far."""
NOW = UNDERVOLTAGE | FREQ_CAPPED | THROTTLED | SOFT_TEMP_LIMIT

HOT = THROTTLED | SOFT_TEMP_LIMIT
"""What the firmware says of a board that is too hot: throttled, at the soft limit."""
WEAK_SUPPLY = UNDERVOLTAGE | THROTTLED
"""... and of one on a weak supply: under-voltage, throttled."""


def sysfs(node_dir: Path) -> Path:
    """The sysfs tree of the lab node whose state is NODE_DIR."""
    return node_dir / "sys"


def power_on(node_dir: Path) -> Path:
    """A fresh board's tree (every flag clear, as after a boot); its root, for the agent."""
    root = sysfs(node_dir)
    path = root / THROTTLED_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    _write(path, 0)
    return root


def flags(node_dir: Path) -> int:
    """The node's flags now; BrambleError if it has never been powered on."""
    path = sysfs(node_dir) / THROTTLED_PATH
    try:
        return int(path.read_text().strip() or "0", 16)
    except FileNotFoundError:
        raise BrambleError(f"{node_dir.name} has not been powered on in this lab") from None


def throttle(node_dir: Path, *, undervoltage: bool = False, clear: bool = False) -> int:
    """Set the node's flags as a hot board's (or, with UNDERVOLTAGE, a weak supply's), or with
    CLEAR end them; the flags written."""
    old = flags(node_dir)
    if clear:
        new = old & ~NOW
    else:
        now = WEAK_SUPPLY if undervoltage else HOT
        new = old | now | (now << SINCE_BOOT)
    _write(sysfs(node_dir) / THROTTLED_PATH, new)
    return new


def describe(value: int) -> str:
    """The flags VALUE in words, as `vcgencmd get_throttled` users read them."""
    names = {
        UNDERVOLTAGE: "under-voltage",
        FREQ_CAPPED: "frequency capped",
        THROTTLED: "throttled",
        SOFT_TEMP_LIMIT: "soft temperature limit",
    }
    now = [name for bit, name in names.items() if value & bit]
    since = [name for bit, name in names.items() if value & (bit << SINCE_BOOT)]
    text = f"0x{value:x}: " + (", ".join(now) if now else "all clear now")
    return text + (f" (since boot: {', '.join(since)})" if since else "")


def _write(path: Path, value: int) -> None:
    """VALUE as the kernel prints it, written in place at a fixed width: the agent keeps the
    file open and reads it again every interval, so it must never see it replaced or empty."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"%08x\n" % value, 0)
    finally:
        os.close(fd)
