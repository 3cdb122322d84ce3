"""The cluster spec (`bramble.toml`): models, loading, and validation errors with locations.

The spec model is the one source of defaults. Loading never lets a pydantic or TOML error
reach the user: every problem becomes a `SpecError` naming the file, the key path, the line
where it can be found, and the fix.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bramble.errors import SpecError

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
        return _check_label(value)


class NodeSpec(_Model):
    """One worker board: its name, its MAC address, and optionally a fixed address."""

    name: str
    mac: str
    address: IPv4Address | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_label(value)

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


class SoftwareSpec(_Model):
    """What the master serves its nodes to install bramble from (`/dist/` on the dashboard port)."""

    wheels_dir: str = "/var/lib/bramble/wheels"

    @field_validator("wheels_dir")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value.rstrip("/") or "/"


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
    software: SoftwareSpec = Field(default_factory=SoftwareSpec)
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


def _check_label(value: str) -> str:
    if not _LABEL_RE.match(value):
        raise ValueError(
            f"'{value}' is not a host name; use lower-case letters, digits and '-', "
            "at most 63, not starting or ending with '-'"
        )
    return value


# --- locating keys in the TOML text -------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_\-\"']+)\s*=")


def _key_lines(text: str) -> dict[str, int]:
    """Map each key path in TOML TEXT (`network.subnet`, `nodes[2].mac`) to its 1-based line.

    A small scanner rather than a parser: tomllib keeps no positions, and spec files are
    simple tables, arrays of tables and single-line keys.
    """
    lines: dict[str, int] = {}
    counts: dict[str, int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            name = header.group(2).replace('"', "").replace("'", "").strip()
            if header.group(1) == "[[":
                index = counts.get(name, 0)
                counts[name] = index + 1
                table = f"{name}[{index}]"
            else:
                table = name
            lines.setdefault(table, number)
            continue
        key = _KEY_RE.match(line)
        if key:
            name = key.group(1).strip("\"'")
            lines.setdefault(f"{table}.{name}" if table else name, number)
    return lines


def _line_of(lines: dict[str, int], key: str) -> int | None:
    while key:
        if key in lines:
            return lines[key]
        key = key.rsplit(".", 1)[0] if "." in key else (key.split("[")[0] if "[" in key else "")
    return None


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[int | str, ...]) -> type[BaseModel] | None:
    model: type[BaseModel] | None = Spec
    for part in loc:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        annotation = field.annotation
        inner = getattr(annotation, "__args__", None)
        candidates = [annotation, *(inner or [])]
        model = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
    return model


# --- validation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Problem:
    key: str
    message: str
    fix: str | None = None


def _pydantic_problems(error: ValidationError) -> Iterator[_Problem]:
    for item in error.errors():
        loc = tuple(item["loc"])
        key = _path(loc)
        if item["type"] == "extra_forbidden":
            parent = _model_at(loc[:-1])
            allowed = sorted(k for k in parent.model_fields if k != "source") if parent else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            yield _Problem(key, "unknown key", fix)
        elif item["type"] == "missing":
            yield _Problem(key, "is required", f"add '{loc[-1]} = ...'")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            yield _Problem(key, message)


def _semantic_problems(spec: Spec) -> Iterator[_Problem]:
    net = spec.network
    subnet = net.subnet
    if net.master_address not in subnet:
        yield _Problem(
            "network.master_address",
            f"{net.master_address} is outside the subnet {subnet}",
            "pick an address inside network.subnet",
        )
    elif net.master_address in (subnet.network_address, subnet.broadcast_address):
        yield _Problem(
            "network.master_address",
            f"{net.master_address} is the subnet's network or broadcast address",
            "pick a host address",
        )
    for key, address in (
        ("network.dhcp_start", net.dhcp_start),
        ("network.dhcp_end", net.dhcp_end),
    ):
        if address not in subnet:
            yield _Problem(
                key,
                f"{address} is outside the subnet {subnet}",
                "keep the range inside network.subnet",
            )
    if net.dhcp_start > net.dhcp_end:
        yield _Problem(
            "network.dhcp_start",
            f"the DHCP range {net.dhcp_start}-{net.dhcp_end} is reversed",
            "swap dhcp_start and dhcp_end",
        )
    in_range = net.dhcp_start <= net.master_address <= net.dhcp_end
    if in_range:
        yield _Problem(
            "network.dhcp_start",
            f"the DHCP range {net.dhcp_start}-{net.dhcp_end} contains the master address "
            f"{net.master_address}",
            "move the range or the master address",
        )

    names: dict[str, str] = {spec.master.name: "master.name"}
    macs: dict[str, str] = {}
    addresses: dict[IPv4Address, str] = {net.master_address: "network.master_address"}
    for index, node in enumerate(spec.nodes):
        here = f"nodes[{index}]"
        if node.name in names:
            yield _Problem(
                f"{here}.name",
                f"duplicate name '{node.name}' (also {names[node.name]})",
                "give every board its own name",
            )
        names.setdefault(node.name, f"{here}.name")
        if node.mac in macs:
            yield _Problem(
                f"{here}.mac",
                f"duplicate MAC {node.mac} (also {macs[node.mac]})",
                "every board has its own MAC: check the label or `ip link` on the board",
            )
        macs.setdefault(node.mac, f"{here}.mac")
        if node.address is None:
            continue
        if node.address not in subnet:
            yield _Problem(
                f"{here}.address",
                f"{node.address} is outside the subnet {subnet}",
                "pick an address inside network.subnet, or leave it out for a dynamic lease",
            )
        elif node.address in (subnet.network_address, subnet.broadcast_address):
            yield _Problem(
                f"{here}.address",
                f"{node.address} is the subnet's network or broadcast address",
                "pick a host address",
            )
        if node.address in addresses:
            yield _Problem(
                f"{here}.address",
                f"duplicate address {node.address} (also {addresses[node.address]})",
                "give every board its own address",
            )
        addresses.setdefault(node.address, f"{here}.address")
        if net.dhcp_start <= node.address <= net.dhcp_end:
            yield _Problem(
                f"{here}.address",
                f"{node.address} is inside the DHCP range {net.dhcp_start}-{net.dhcp_end}",
                "pick a fixed address outside the range, or move the range",
            )

    tel = spec.telemetry
    if tel.stale_after >= tel.down_after:
        yield _Problem(
            "telemetry.stale_after",
            f"stale_after ({tel.stale_after}) must be less than down_after ({tel.down_after})",
            "a node goes stale before it goes down",
        )

    mounts: set[str] = set()
    for index, share in enumerate(spec.shares):
        if share.mount in mounts:
            yield _Problem(
                f"shares[{index}].mount",
                f"duplicate mount point {share.mount}",
                "mount each share at its own place",
            )
        mounts.add(share.mount)


def parse_spec(text: str, file: str = SPEC_NAME) -> Spec:
    """Parse and validate spec TEXT; FILE names it in errors. Pure: no file access."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise SpecError(
            f"not valid TOML: {exc}",
            file=file,
            line=int(match.group(1)) if match else None,
            fix="check quotes, brackets and '=' on that line",
        ) from None
    return _validate(data, text, file)


def _validate(data: dict[str, Any], text: str, file: str) -> Spec:
    lines = _key_lines(text)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = list(_pydantic_problems(exc))
    else:
        problems = list(_semantic_problems(spec))
        if not problems:
            return spec
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise SpecErrors(
        [
            SpecError(p.message, file=file, key=p.key, line=_line_of(lines, p.key), fix=p.fix)
            for p in problems
        ],
        summary_suffix=more,
        first=first,
    )


class SpecErrors(SpecError):
    """Every problem found in one spec; prints as the first, and says how many more."""

    def __init__(self, errors: list[SpecError], *, summary_suffix: str, first: _Problem) -> None:
        self.errors = errors
        head = errors[0]
        super().__init__(
            first.message + summary_suffix,
            file=head.file,
            key=head.key,
            line=head.line,
            fix=head.fix,
        )


def find_spec_path(explicit: Path | None = None) -> Path:
    """The spec to use: EXPLICIT, else ./bramble.toml, else /etc/bramble/bramble.toml."""
    if explicit is not None:
        if not explicit.is_file():
            raise SpecError(
                "no such file", file=str(explicit), fix="run `bramble init` to write one"
            )
        return explicit
    for candidate in (Path(SPEC_NAME), SYSTEM_SPEC):
        if candidate.is_file():
            return candidate
    raise SpecError(
        f"no spec found (looked for ./{SPEC_NAME} and {SYSTEM_SPEC})",
        file=SPEC_NAME,
        fix="run `bramble init` here, or pass --spec FILE",
    )


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at PATH."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(
            f"cannot read: {exc.strerror}", file=str(path), fix="check the path"
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", file=str(path), fix="save the file as UTF-8") from None
    spec = parse_spec(text, str(path))
    return spec.model_copy(update={"source": path})


def secrets_path(spec_path: Path) -> Path:
    """Where the secrets file of the spec at SPEC_PATH lives: beside it."""
    return spec_path.parent / SECRETS_NAME


def parse_secrets(text: str, file: str = SECRETS_NAME) -> Secrets:
    """Parse secrets TEXT. Pure."""
    fix = "run `bramble init --force` in a scratch directory and copy its secrets file"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", file=file, fix=fix) from None
    telemetry = data.get("telemetry")
    admin = data.get("admin")
    if not isinstance(telemetry, dict) or not isinstance(admin, dict):
        raise SpecError("needs [telemetry] and [admin] tables", file=file, fix=fix)
    key_id = telemetry.get("key_id")
    key_hex = telemetry.get("key")
    token = admin.get("token")
    if not isinstance(key_id, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", key_id):
        raise SpecError(
            "must be 1-32 letters, digits, '_', '.', '-'",
            file=file,
            key="telemetry.key_id",
            fix=fix,
        )
    try:
        key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
    except ValueError:
        key = b""
    if len(key) < 16:
        raise SpecError("must be at least 32 hex digits", file=file, key="telemetry.key", fix=fix)
    if not isinstance(token, str) or len(token) < 16:
        raise SpecError(
            "must be a string of at least 16 characters", file=file, key="admin.token", fix=fix
        )
    return Secrets(telemetry_key_id=key_id, telemetry_key=key, admin_token=token)


def load_secrets(spec_path: Path) -> Secrets:
    """Read the secrets file beside the spec at SPEC_PATH."""
    path = secrets_path(spec_path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(
            "secrets file not found", file=str(path), fix="run `bramble init` to create it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=str(path), fix="check the file") from None
    return parse_secrets(text, str(path))


def secrets_mode_ok(spec_path: Path) -> bool:
    """Whether the secrets file is private to its owner (mode 0600 or stricter)."""
    try:
        return os.stat(secrets_path(spec_path)).st_mode & 0o077 == 0
    except OSError:
        return False


def address_in(spec: Spec, text: str) -> bool:
    """Whether TEXT is an IPv4 address inside the spec's subnet."""
    try:
        return ipaddress.IPv4Address(text) in spec.network.subnet
    except ValueError:
        return False
