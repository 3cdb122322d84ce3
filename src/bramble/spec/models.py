"""The spec's models: every key of `bramble.toml`, its type, default and the checks of one value.

The spec model is the one source of defaults. Checks that relate several keys (a node's
address inside the subnet, duplicate MACs) are in `checks`.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, ip_address
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

SPEC_NAME = "bramble.toml"
SECRETS_NAME = "bramble.secrets.toml"
SYSTEM_SPEC = Path("/etc/bramble") / SPEC_NAME

# Limits the compiled agent (telemetry/agent.c) shares: the spec refuses what it cannot take.
MAX_UNICAST = 16  # unicast targets
MAX_HOST = 253  # characters of a unicast target's host: a DNS name's longest
MAX_INTERVAL = 3600  # seconds between heartbeats
MAX_TELEMETRY_KEY = 1024  # bytes of the telemetry key

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(infinite|\d{1,9}[smhdw]?)$")
# Interface names as the kernel allows them (at most IFNAMSIZ - 1 bytes, no '/', ':' or
# whitespace), narrowed to what nftables rules and systemd-networkd match without quoting.
_IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Paths as config files take them unquoted: exports, tmpfiles, fstab, unit names.
_PATH_RE = re.compile(r"^/[A-Za-z0-9._@+=/-]*$")
# Directories of the system itself: never exported nor mounted over, nor anything inside them.
SYSTEM_TREES = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/proc", "/root",
                "/run", "/sbin", "/sys", "/usr")  # fmt: skip
SYSTEM_DIRS = ("/", "/home", "/mnt", "/media", "/opt", "/srv", "/tmp", "/var")
_HOST_RE = re.compile(rf"^[A-Za-z0-9._-]{{1,{MAX_HOST}}}$")


class _Model(BaseModel):
    # allow_inf_nan: every number in a spec is finite (TOML has nan and inf)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _text(cls, value: object) -> object:
        """No string of the spec holds a control character or a quote: each may end up in
        a config file, where a newline or a quote would start something else."""
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and (
                not text.isprintable() or any(c in text for c in "\"'\\`")
            ):
                raise ValueError(
                    f"{text!r} holds a control character, quote or backslash: remove it"
                )
        return value


class NetworkSpec(_Model):
    """The cluster LAN: subnet, the master's address, DHCP pool, DNS domain, interfaces."""

    subnet: IPv4Network = IPv4Network("10.42.0.0/24")
    master_address: IPv4Address = IPv4Address("10.42.0.1")
    dhcp_start: IPv4Address = IPv4Address("10.42.0.100")
    dhcp_end: IPv4Address = IPv4Address("10.42.0.199")
    lease_time: str = "12h"
    domain: str = "cluster"
    cluster_interface: str = "eth0"
    uplink_interface: str = "wlan0"
    upstream_dns: list[IPv4Address] = Field(
        default_factory=lambda: [IPv4Address("1.1.1.1"), IPv4Address("9.9.9.9")]
    )

    @field_validator("lease_time")
    @classmethod
    def _lease(cls, value: str) -> str:
        if not _DURATION_RE.match(value):
            raise ValueError("must be a duration such as '12h', '30m', '3600' or 'infinite'")
        return value

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.lower().strip(".")
        if not value or not all(_LABEL_RE.match(p) for p in value.split(".")):
            raise ValueError("must be a DNS domain such as 'cluster' or 'lab.example'")
        return value

    @field_validator("cluster_interface", "uplink_interface", mode="before")
    @classmethod
    def _ifname(cls, value: object) -> object:
        if isinstance(value, str) and (not _IFNAME_RE.match(value) or value in (".", "..")):
            raise ValueError(
                f"{value!r} is not a network interface name: 1 to 15 letters, digits, '_', "
                "'.' or '-', as `ip link` shows it"
            )
        return value


class MasterSpec(_Model):
    """The master board."""

    name: str = "master"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_label(value)


class NodeSpec(_Model):
    """One worker board: its name, its MAC address, and optionally a fixed address."""

    name: str
    mac: str
    address: IPv4Address | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_label(value)

    @field_validator("mac", mode="before")
    @classmethod
    def _mac(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        mac = value.strip().lower().replace("-", ":")
        if not _MAC_RE.match(mac):
            raise ValueError(
                f"'{value}' is not a MAC address; write six hex pairs: 'b8:27:eb:12:34:56'"
            )
        if int(mac[:2], 16) & 1:
            raise ValueError(f"'{value}' is a multicast MAC address; a board's MAC is unicast")
        return mac


class ShareSpec(_Model):
    """A directory the master exports over NFS and every node mounts."""

    export: str = "/srv/jobs"
    mount: str = "/mnt/jobs"

    @field_validator("export", "mount", mode="before")
    @classmethod
    def _directory(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        path = check_path(value)
        if (
            path in SYSTEM_DIRS
            or path.startswith(tuple(t + "/" for t in SYSTEM_TREES))
            or (path in SYSTEM_TREES)
        ):
            raise ValueError(
                f"{path} is a directory of the system itself: share a directory of its own, "
                "such as /srv/jobs (exported) and /mnt/jobs (mounted)"
            )
        return path


class EnrollSpec(_Model):
    """How the master admits a board that asks to enroll with the join token."""

    policy: Literal["auto", "manual"] = "auto"
    """auto: a board whose MAC is in the spec, asking from the address the master's DHCP
    server leased to that MAC, is enrolled at once; anything else waits for approval."""
    lease_file: str = "/var/lib/misc/dnsmasq.leases"
    """dnsmasq's lease file on the master (the rendered dnsmasq config writes it there)."""
    per_minute: int = Field(default=30, ge=1, le=100000)
    """Requests a minute the master answers from one address (and 10 times that in all)."""
    port: int = Field(default=0, ge=0, le=65535)
    """The HTTPS port the master takes enrollment requests on; 0: the dashboard's port + 1."""
    rotate_days: float = Field(default=30.0, ge=0, le=3650)
    """Days after which a node's keys and worker certificate are due for rotation (the
    node asks the master every hour and rotates when due); 0: never, unless the admin asks
    with `bramble keys rotate --nodes`."""

    @field_validator("lease_file")
    @classmethod
    def _lease_file(cls, value: str) -> str:
        return check_path(value)


class TelemetrySpec(_Model):
    """The agents' heartbeat: where it goes, how often, and what the master accepts."""

    group: IPv4Address = IPv4Address("224.0.0.251")
    port: int = Field(default=6000, ge=1, le=65535)
    interval: float = 1.0
    unicast: list[str] = Field(default_factory=list)
    interface: str = ""
    ttl: int = Field(default=1, ge=1, le=255)
    allow_unsigned: bool = False
    clock_window: float = Field(default=30.0, gt=0, le=86400)
    stale_after: float = Field(default=3, gt=0, le=1000)
    down_after: float = Field(default=10, gt=0, le=10000)
    max_nodes: int = Field(default=1024, ge=1, le=65536)
    admit: Literal["spec", "any"] = "spec"
    engine: Literal["auto", "compiled", "python"] = "auto"
    procs_every: int = Field(default=30, ge=0, le=1_000_000)
    """Intervals between two datagrams of the node's top processes; 0: none. Reading every
    process's stat is most of the agent's CPU time at 10; 30 keeps it within its budget."""

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not 0.01 <= value <= MAX_INTERVAL:
            raise ValueError(
                f"must be more than 0 (at least 0.01) and at most {MAX_INTERVAL} seconds "
                "(the original sends every 1 s)"
            )
        return value

    @field_validator("group")
    @classmethod
    def _group(cls, value: IPv4Address) -> IPv4Address:
        if not value.is_multicast:
            raise ValueError(f"{value} is not a multicast address (224.0.0.0/4)")
        return value

    @field_validator("unicast")
    @classmethod
    def _unicast(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_UNICAST:
            raise ValueError(
                f"{len(value)} targets; at most {MAX_UNICAST} targets (each datagram is sent "
                "to each one): send to the master, or use the multicast group"
            )
        for target in value:
            host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
            if not _HOST_RE.match(host) or (
                port and not (port.isdigit() and 0 < int(port) < 65536)
            ):
                raise ValueError(
                    f"'{target[:80]}' is not 'host' or 'host:port' (a host name or IPv4 "
                    f"address of at most {MAX_HOST} characters, a port from 1 to 65535)"
                )
        return value

    @field_validator("interface")
    @classmethod
    def _interface(cls, value: str) -> str:
        if value:
            try:
                IPv4Address(value)
            except ValueError:
                raise ValueError(
                    f"'{value}' is not an IPv4 address; give the address of the interface "
                    "to send on, such as '127.0.0.1', or leave it empty"
                ) from None
        return value


class DashboardSpec(_Model):
    """Where the master's HTTP API and dashboard listen."""

    bind: str = ""
    port: int = Field(default=8080, ge=1, le=65535)

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        if value:
            try:
                ip_address(value)
            except ValueError:
                raise ValueError(
                    f"{value!r} is not an IP address; give an address of the master, or "
                    "leave it empty for its cluster address"
                ) from None
        return value


class HistorySpec(_Model):
    """The master's SQLite history and how long each resolution is kept."""

    path: str = "/var/lib/bramble/history.db"
    raw_hours: float = Field(default=24, gt=0, le=24 * 366)
    minute_days: float = Field(default=30, gt=0, le=3660)
    hour_days: float = Field(default=365, gt=0, le=36600)
    max_bytes: int = Field(default=2 << 30, ge=1 << 20)
    max_changes: int = Field(default=100_000, ge=100)
    # Samples are kept in memory and written this often: what a power cut may lose, and
    # what spares an SD card (one small write a minute rather than one a second).
    flush_seconds: float = Field(default=60, ge=1, le=3600)

    @field_validator("path", mode="before")
    @classmethod
    def _path(cls, value: object) -> object:
        return check_path(value) if isinstance(value, str) else value


class JobsSpec(_Model):
    """Dask scheduler and workers."""

    scheduler_port: int = Field(default=8786, ge=1, le=65535)
    dashboard_port: int = Field(default=8787, ge=1, le=65535)
    tls: bool = True
    jobs_dir: str = "/mnt/jobs"
    # The master removes a node's Dask worker from the scheduler when the node goes down, so
    # its tasks are rescheduled at once rather than after Dask's own timeout (minutes).
    remove_down_workers: bool = True

    @field_validator("jobs_dir", mode="before")
    @classmethod
    def _jobs_dir(cls, value: object) -> object:
        return check_path(value) if isinstance(value, str) else value


class SoftwareSpec(_Model):
    """What the master serves its nodes to install bramble from (`/dist/` on the dashboard port)."""

    wheels_dir: str = "/var/lib/bramble/wheels"

    @field_validator("wheels_dir", mode="before")
    @classmethod
    def _wheels_dir(cls, value: object) -> object:
        return check_path(value) if isinstance(value, str) else value


_SECONDS_RE = re.compile(r"^(\d{1,9}(\.\d{1,6})?)\s*(ms|s|m|h|d)?$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_SECONDS = 366 * 86400


def _seconds(value: object) -> object:
    """A duration as seconds: a number, or text such as '90s', '5m', '1.5h', '2d'."""
    if isinstance(value, bool):
        raise ValueError("is a duration: a number of seconds, or text such as '30s' or '5m'")
    if isinstance(value, str):
        match = _SECONDS_RE.match(value.strip())
        if not match:
            raise ValueError(
                f"{value[:40]!r} is not a duration: write a number of seconds, or a number "
                "with a unit (ms, s, m, h, d) such as '30s' or '5m'"
            )
        value = float(match.group(1)) * _UNIT_SECONDS[match.group(3) or "s"]
    if isinstance(value, int | float) and not 0 <= value <= MAX_SECONDS:
        raise ValueError(f"must be from 0 to {MAX_SECONDS} seconds (a year)")
    return value


Seconds = Annotated[float, BeforeValidator(_seconds)]
"""A duration in the spec: a number of seconds, or text with a unit ('30s', '5m', '2h')."""

_RULE_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_GLOB_RE = re.compile(r"^[A-Za-z0-9_.*?\[\]!-]{1,253}$")
Severity = Literal["info", "warning", "critical"]
Comparison = Literal[">", ">=", "<", "<=", "==", "!="]


class AlertRuleSpec(_Model):
    """One alerting rule: when METRIC compared (OP) with THRESHOLD holds on a node for FOR
    seconds, the alert fires; it resolves once the comparison has not held for
    KEEP_FIRING_FOR seconds (0: at once). A rule named like a built-in one replaces it, taking
    the keys it leaves out from it; `enabled = false` turns a rule off."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False,
                              populate_by_name=True)  # fmt: skip

    name: str
    metric: str | None = None
    op: Comparison | None = None
    threshold: float | None = None
    for_: Seconds | None = Field(default=None, alias="for")
    keep_firing_for: Seconds | None = None
    severity: Severity | None = None
    nodes: str | None = None
    summary: str | None = None
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _RULE_NAME_RE.match(value):
            raise ValueError(
                f"{value[:80]!r} is not a rule name: lower-case letters, digits and '_', "
                "starting with a letter, at most 63 (such as 'temperature_high')"
            )
        return value

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, value: str | None) -> str | None:
        if value is not None and not _GLOB_RE.match(value):
            raise ValueError(
                f"{value[:80]!r} is not a pattern of node names: letters, digits, '-', '.' "
                "and the wildcards '*', '?', '[...]', such as 'node-*'"
            )
        return value


def _builtin(name: str, metric: str, op: str, threshold: float, wait: float, severity: str,
             summary: str) -> AlertRuleSpec:  # fmt: skip
    return AlertRuleSpec.model_validate(
        {"name": name, "metric": metric, "op": op, "threshold": threshold, "for": wait,
         "keep_firing_for": 0, "severity": severity, "nodes": "*", "summary": summary}
    )  # fmt: skip


BUILTIN_ALERTS: tuple[AlertRuleSpec, ...] = (
    _builtin("node_down", "down", "==", 1, 0, "critical",
             "the node stopped sending its heartbeat"),
    _builtin("temperature_high", "cputemp", ">", 80, 60, "warning",
             "the CPU is hot: it will throttle soon"),
    _builtin("memory_full", "mem_used_percent", ">", 95, 60, "warning",
             "memory is nearly all in use"),
    _builtin("disk_full", "disk_used_percent", ">", 90, 300, "warning",
             "the root filesystem is nearly full"),
    _builtin("undervoltage", "undervoltage", "==", 1, 0, "critical",
             "the power supply is too weak: the board is under-voltage now (it throttles, and "
             "the SD card is at risk)"),
    _builtin("throttled", "throttled", "==", 1, 30, "warning",
             "the firmware is throttling the CPU now (heat, or a weak supply)"),
    _builtin("clock_offset", "clock_offset", ">", 1, 60, "warning",
             "the clock of the node is more than a second off the master (no RTC, no NTP?)"),
    _builtin("history_stopped", "history_stopped", "==", 1, 30, "critical",
             "the master cannot write its history (disk full or read-only?)"),
)  # fmt: skip
"""The rules on with no configuration (`[alerting] defaults = false` turns them all off)."""


class AlertingSpec(_Model):
    """Where alerts are sent, and how often: Alertmanager's grouping (alerts of one rule are
    one notification; the first after GROUP_WAIT, changes at most every GROUP_INTERVAL, the
    same firing alerts again every REPEAT_INTERVAL) for the WEBHOOKS and the COMMAND; every
    change at once, and all alerts every minute, to ALERTMANAGERS (their base URLs: the
    alerts go to `/api/v2/alerts`, as Prometheus sends them)."""

    defaults: bool = True
    webhooks: list[str] = Field(default_factory=list)
    command: list[str] = Field(default_factory=list)
    alertmanagers: list[str] = Field(default_factory=list)
    group_wait: Seconds = 10.0
    group_interval: Seconds = 60.0
    repeat_interval: Seconds = 4 * 3600.0
    timeout: Seconds = Field(default=10.0, gt=0, le=300)

    @field_validator("webhooks", "alertmanagers")
    @classmethod
    def _webhooks(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_UNICAST:
            raise ValueError(f"{len(value)} URLs; at most {MAX_UNICAST}")
        for url in value:
            if not re.match(r"^https?://[^\s/]+(/\S*)?$", url):
                raise ValueError(
                    f"{url[:80]!r} is not an http:// or https:// URL, such as "
                    "'http://alertmanager:9093/api/v2/alerts'"
                )
        return value

    @field_validator("command")
    @classmethod
    def _command(cls, value: list[str]) -> list[str]:
        if value and not value[0].startswith("/"):
            raise ValueError(
                f"{value[0][:80]!r} is not an absolute path: the command's program, such as "
                "['/usr/local/bin/notify', '--to', 'ops']"
            )
        return value


class Spec(_Model):
    """A whole cluster, as written in `bramble.toml`."""

    network: NetworkSpec = Field(default_factory=NetworkSpec)
    master: MasterSpec = Field(default_factory=MasterSpec)
    nodes: list[NodeSpec] = Field(default_factory=list)
    shares: list[ShareSpec] = Field(default_factory=lambda: [ShareSpec()])
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)
    enroll: EnrollSpec = Field(default_factory=EnrollSpec)
    dashboard: DashboardSpec = Field(default_factory=DashboardSpec)
    history: HistorySpec = Field(default_factory=HistorySpec)
    jobs: JobsSpec = Field(default_factory=JobsSpec)
    software: SoftwareSpec = Field(default_factory=SoftwareSpec)
    alerting: AlertingSpec = Field(default_factory=AlertingSpec)
    alerts: list[AlertRuleSpec] = Field(default_factory=list, max_length=256)

    @property
    def dashboard_bind(self) -> str:
        """The HTTP bind address: the spec's, or the master's cluster address."""
        return self.dashboard.bind or str(self.network.master_address)

    @property
    def enroll_port(self) -> int:
        """The master's HTTPS enrollment port: the spec's, or the one after the dashboard's."""
        return self.enroll.port or self.dashboard.port % 65535 + 1

    def fqdn(self, name: str) -> str:
        """A node's fully qualified name under the cluster domain."""
        return f"{name}.{self.network.domain}"

    def node(self, name: str) -> NodeSpec | None:
        """The node called NAME, if the spec has one."""
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True, slots=True)
class Secrets:
    """The cluster's secrets, kept beside the spec on the master with mode 0600."""

    telemetry_key_id: str
    telemetry_key: bytes
    admin_token: str
    join_token: str = ""
    """The token a node image carries: it can ask to enroll and nothing else ("" if none)."""
    join_previous: str = ""
    """The join token before the last rotation, still good until JOIN_PREVIOUS_UNTIL."""
    join_previous_until: float = 0.0


def check_path(value: str) -> str:
    """VALUE as an absolute, normalized path that config files take unquoted (one trailing
    '/' is dropped); ValueError saying how to write it otherwise."""
    path = value.rstrip("/") or "/"
    if not path.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path: start it with '/'")
    if not _PATH_RE.match(path):
        raise ValueError(
            f"{value!r} has characters config files would misread: use letters, digits and "
            "'._@+=-/' only"
        )
    normal = posixpath.normpath(path)
    if normal != path or "/../" in path + "/":
        raise ValueError(f"{value!r} is not a plain path: write it as {normal}")
    return path


def check_label(value: str) -> str:
    if not _LABEL_RE.match(value):
        raise ValueError(
            f"'{value}' is not a host name; use lower-case letters, digits and '-', "
            "at most 63, not starting or ending with '-'"
        )
    return value
