"""The master's own DHCP leases, read from dnsmasq's lease file.

Each line is `EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID` (EXPIRY in epoch seconds, 0 for an
infinite lease). `parse_leases` is pure; `read_leases` reads the file and never fails: an
unreadable file is no leases, so every board waits for approval rather than being trusted.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


def parse_leases(text: str, now: float) -> dict[str, str]:
    """MAC to leased address for every lease in TEXT still valid at NOW; bad lines skipped."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        expiry, mac, address = int(fields[0]), fields[1].lower(), fields[2]
        if expiry != 0 and expiry < now:
            continue
        out[mac] = address
    return out


def read_leases(path: Path, now: float) -> dict[str, str]:
    """The valid leases in the file at PATH; none if it cannot be read."""
    try:
        text = path.read_text("utf-8", errors="replace")
    except OSError as exc:
        log.warning("cannot read the DHCP leases %s: %s", path, exc.strerror)
        return {}
    return parse_leases(text, now)
