"""`bramble init`: write a commented spec, its secrets file and the cluster's TLS material."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bramble.errors import BrambleError
from bramble.jobs.tls import create_tls_for_spec
from bramble.spec import SECRETS_NAME, SPEC_NAME, parse_spec

SPEC_TEMPLATE = """\
# bramble.toml: the whole cluster in one file. `bramble check` validates it.
# Every key below shows its default; delete what you do not change.

[network]
subnet = "10.42.0.0/24"          # the cluster LAN behind the master
master_address = "10.42.0.1"     # the master's address on the cluster interface
dhcp_start = "10.42.0.100"       # dynamic leases for boards without a fixed address
dhcp_end = "10.42.0.199"
lease_time = "12h"
domain = "cluster"               # nodes resolve as NAME.cluster through the master
cluster_interface = "eth0"       # the master's port on the cluster switch
uplink_interface = "wlan0"       # the master's way out (NAT); the original used Wi-Fi
upstream_dns = ["1.1.1.1", "9.9.9.9"]

[master]
name = "master"

# One [[nodes]] table per board: a name and the board's MAC address (see `ip link`).
# `address` is optional; without it the board gets a lease from the DHCP range.
# Add boards with `bramble nodes add NAME MAC`.
{nodes}
# Directories the master exports over NFS and every node mounts.
[[shares]]
export = "/srv/jobs"
mount = "/mnt/jobs"

[telemetry]
group = "224.0.0.251"            # multicast group of the heartbeat (the original's)
port = 6000
interval = 1.0                   # seconds between heartbeats
unicast = []                     # extra "host:port" targets for networks without multicast
interface = ""                   # address to send on; "" lets the system choose
ttl = 1
allow_unsigned = false           # accept the original C daemon's unsigned packets
clock_window = 30.0              # seconds a heartbeat's clock may differ from the master's
stale_after = 3                  # missed intervals before a node shows as stale
down_after = 10                  # missed intervals before a node shows as down
max_nodes = 1024                 # most nodes the master tracks
engine = "auto"                  # agent: "compiled" (C: the wheel's, else built with cc
                                 # on first start), "python", or "auto" (compiled where
                                 # there is one, else Python)

[dashboard]
bind = ""                        # "" binds to master_address only
port = 8080

[history]
path = "/var/lib/bramble/history.db"
raw_hours = 24                   # every heartbeat kept this long
minute_days = 30                 # then 1-minute averages
hour_days = 365                  # then 1-hour averages

[jobs]
scheduler_port = 8786
dashboard_port = 8787
tls = true                       # mutual TLS between scheduler, workers and clients
jobs_dir = "/mnt/jobs"
remove_down_workers = true       # a node down on the master loses its Dask worker at once

[software]
wheels_dir = "/var/lib/bramble/wheels"  # wheels the master serves its nodes (dependencies):
                                 # fill it with `bramble wheels fetch --platform aarch64`

[alerting]
defaults = true                  # the built-in rules: node_down, temperature_high (80 C),
                                 # memory_full (95 %), disk_full (90 %), clock_offset (1 s),
                                 # history_stopped; an [[alerts]] of the same name changes one
webhooks = []                    # URLs POSTed Alertmanager's webhook JSON
command = []                     # a program given the same JSON on its standard input
alertmanagers = []               # Alertmanagers (base URLs) to push every alert to
group_wait = "10s"               # Alertmanager's timing of notifications, per rule
group_interval = "1m"
repeat_interval = "4h"

# Rules of your own: when `metric op threshold` holds on a node for `for`, the alert fires.
# [[alerts]]
# name = "busy"
# metric = "load1"               # any metric in /api/nodes `metrics`
# op = ">"
# threshold = 4
# for = "2m"
# severity = "warning"           # info, warning or critical
# nodes = "node-*"
"""

EXAMPLE_NODES = [
    ("node-1", "b8:27:eb:00:00:01", "10.42.0.11"),
    ("node-2", "b8:27:eb:00:00:02", "10.42.0.12"),
    ("node-3", "b8:27:eb:00:00:03", "10.42.0.13"),
    ("node-4", "b8:27:eb:00:00:04", "10.42.0.14"),
]


def spec_text(nodes: list[tuple[str, str, str | None]] | None = None) -> str:
    """The commented spec `bramble init` writes, with NODES (default: four example boards)."""
    blocks = []
    for name, mac, address in EXAMPLE_NODES if nodes is None else nodes:
        block = f'[[nodes]]\nname = "{name}"\nmac = "{mac}"\n'
        if address:
            block += f'address = "{address}"\n'
        blocks.append(block)
    return SPEC_TEMPLATE.format(nodes="\n".join(blocks))


def secrets_text() -> str:
    """A fresh secrets file: telemetry key, admin token and join token."""
    return (
        "# bramble secrets: keep this file private (mode 0600), on the master only.\n"
        "[telemetry]\n"
        'key_id = "k1"\n'
        f'key = "{secrets.token_hex(32)}"\n'
        "\n[admin]\n"
        f'token = "{secrets.token_urlsafe(32)}"\n'
        "\n# The node image carries this one: it can ask to enroll, nothing else.\n"
        "[join]\n"
        f'token = "{secrets.token_urlsafe(32)}"\n'
    )


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    os.chmod(path, 0o600)


def init_directory(directory: Path, *, force: bool = False) -> list[Path]:
    """Write the spec, secrets and TLS material into DIRECTORY; return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    spec_path = directory / SPEC_NAME
    secrets_file = directory / SECRETS_NAME
    existing = [p for p in (spec_path, secrets_file) if p.exists()]
    if existing and not force:
        raise BrambleError(
            f"{existing[0]} already exists; pass --force to overwrite it "
            "(a new secrets file means every board needs the new one)"
        )
    text = spec_text()
    parse_spec(text, str(spec_path))
    spec_path.write_text(text, encoding="utf-8")
    _write_private(secrets_file, secrets_text())
    tls = create_tls_for_spec(directory, force=force)
    return [spec_path, secrets_file, tls.directory]
