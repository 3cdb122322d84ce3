"""The spec's models: every key of `bramble.toml`, its type, default and the checks of one value.

The spec model is the one source of defaults. Checks that relate several keys (a node's
address inside the subnet, duplicate MACs) are in `checks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SPEC_NAME = "bramble.toml"
SECRETS_NAME = "bramble.secrets.toml"
SYSTEM_SPEC = Path("/etc/bramble") / SPEC_NAME

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DURATION_RE = re.compile(r"^(infinite|\d+[smhdw]?)$")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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

    @field_validator("cluster_interface", "uplink_interface")
    @classmethod
    def _ifname(cls, value: str) -> str:
        if not value or len(value) > 15 or "/" in value or " " in value:
            raise ValueError("must be a network interface name of 1 to 15 characters")
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

    @field_validator("export", "mount")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in " \t\n,#"):
            raise ValueError("must be an absolute path without spaces, commas or '#'")
        return value.rstrip("/") or "/"


class TelemetrySpec(_Model):
    """The agents' heartbeat: where it goes, how often, and what the master accepts."""

    group: IPv4Address = IPv4Address("224.0.0.251")
    port: int = Field(default=6000, ge=1, le=65535)
    interval: float = 1.0
    unicast: list[str] = Field(default_factory=list)
    interface: str = ""
    ttl: int = Field(default=1, ge=1, le=255)
    allow_unsigned: bool = False
    clock_window: float = Field(default=30.0, gt=0)
    stale_after: float = Field(default=3, gt=0)
    down_after: float = Field(default=10, gt=0)
    max_nodes: int = Field(default=1024, ge=1)
    engine: Literal["auto", "compiled", "python"] = "auto"

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be more than 0 seconds (the original sends every 1 s)")
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
        for target in value:
            host, _, port = target.rpartition(":") if ":" in target else (target, "", "")
            if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
                raise ValueError(f"'{target}' is not 'host' or 'host:port'")
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


class HistorySpec(_Model):
    """The master's SQLite history and how long each resolution is kept."""

    path: str = "/var/lib/bramble/history.db"
    raw_hours: float = Field(default=24, gt=0)
    minute_days: float = Field(default=30, gt=0)
    hour_days: float = Field(default=365, gt=0)


class JobsSpec(_Model):
    """Dask scheduler and workers."""

    scheduler_port: int = Field(default=8786, ge=1, le=65535)
    dashboard_port: int = Field(default=8787, ge=1, le=65535)
    tls: bool = True
    jobs_dir: str = "/mnt/jobs"


class Spec(_Model):
    """A whole cluster, as written in `bramble.toml`."""

    network: NetworkSpec = Field(default_factory=NetworkSpec)
    master: MasterSpec = Field(default_factory=MasterSpec)
    nodes: list[NodeSpec] = Field(default_factory=list)
    shares: list[ShareSpec] = Field(default_factory=lambda: [ShareSpec()])
    telemetry: TelemetrySpec = Field(default_factory=TelemetrySpec)
    dashboard: DashboardSpec = Field(default_factory=DashboardSpec)
    history: HistorySpec = Field(default_factory=HistorySpec)
    jobs: JobsSpec = Field(default_factory=JobsSpec)
    source: Path | None = Field(default=None, exclude=True)

    @property
    def dashboard_bind(self) -> str:
        """The HTTP bind address: the spec's, or the master's cluster address."""
        return self.dashboard.bind or str(self.network.master_address)

    def fqdn(self, name: str) -> str:
        """A node's fully qualified name under the cluster domain."""
        return f"{name}.{self.network.domain}"

    def node(self, name: str) -> NodeSpec | None:
        """The node called NAME, if the spec has one."""
        return next((n for n in self.nodes if n.name == name), None)


@dataclass(frozen=True, slots=True)
class Secrets:
    """The cluster's shared secrets, kept beside the spec with mode 0600."""

    telemetry_key_id: str
    telemetry_key: bytes
    admin_token: str


def check_label(value: str) -> str:
    if not _LABEL_RE.match(value):
        raise ValueError(
            f"'{value}' is not a host name; use lower-case letters, digits and '-', "
            "at most 63, not starting or ending with '-'"
        )
    return value
