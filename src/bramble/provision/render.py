"""Render every config file of the master and of the (identical) node image from the spec.

`render` is pure: a spec (and optionally its secrets and TLS files) in, a mapping of install
paths (`master/etc/...`, `node/etc/...`) to file text out. Each file comes from a Jinja2
template in `templates/` named after the file it makes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import tomlkit

from bramble.spec import Secrets, ShareSpec, Spec

if TYPE_CHECKING:
    from bramble.cluster import Cluster

log = logging.getLogger(__name__)

HEADER = "Rendered by bramble from bramble.toml: edit the spec, not this file."
VENV = "/opt/bramble"
BRAMBLE = f"{VENV}/bin/bramble"
ETC = "/etc/bramble"
SPEC_FILE = f"{ETC}/bramble.toml"
TLS_DIR = f"{ETC}/tls"
NFT_FILE = "/etc/nftables.d/bramble.nft"
INSTALLER = f"{ETC}/bramble-install"
"""The node's installer: bramble from the master's /dist/ into VENV."""
USER_DATA = "node/user-data"
"""The cloud-init file for flashing node images; rendered, never applied."""

JOIN_FILE = f"{ETC}/join.toml"
"""The node image's join token and the master's address: all a stranger may see."""
CREDENTIALS_FILE = f"{ETC}/node.toml"
"""A node's own credentials, written on the board at enrollment (never rendered)."""

MASTER_TLS = ("ca.pem", "scheduler.pem", "scheduler-key.pem", "client.pem", "client-key.pem")
NODE_TLS = ("ca.pem",)
"""The node image's TLS files: the CA certificate only; its worker key is made on the board."""
_PRIVATE = ("bramble.secrets.toml", "join.toml", "node.toml")

# Cluster-side ports the master serves: DNS, DHCP, NTP, NFSv4, ssh, API, scheduler.
_UDP_FIXED = (53, 67, 123)
_TCP_FIXED = (22, 53, 2049)

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("bramble.provision", "templates"),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    text: str
    mode: str


def private(path: str) -> bool:
    """Whether the rendered file at PATH holds secrets (installed with mode 0600)."""
    name = path.rsplit("/", 1)[-1]
    return name in _PRIVATE or name.endswith("-key.pem")


def unit_name(path: str, suffix: str) -> str:
    """The systemd unit name of a mount point PATH (as `systemd-escape --path` makes it)."""
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return "-" + suffix
    out = []
    for part in parts:
        escaped = ""
        for i, ch in enumerate(part):
            if ch.isalnum() or ch in ":_" or (ch == "." and i > 0):
                escaped += ch
            else:
                escaped += "".join(f"\\x{b:02x}" for b in ch.encode())
        out.append(escaped)
    return "-".join(out) + suffix


def spec_toml(spec: Spec) -> str:
    """The spec as TOML text (what `/etc/bramble/bramble.toml` holds on every board)."""
    data = spec.model_dump(mode="json", exclude_none=True)
    if not data.get("alerts"):  # no rules of the spec's own: not a bare `alerts = []` on top
        data.pop("alerts", None)
    return f"# {HEADER}\n" + tomlkit.dumps(data)


def node_spec_toml(spec: Spec) -> str:
    """The spec as a node image holds it: without the node list, so adding or removing a
    board changes nothing on the boards (a node learns its name by DHCP and enrollment), and
    without the master's alert rules and receivers (a webhook address may hold a token)."""
    data = spec.model_dump(mode="json", exclude_none=True, exclude={"nodes", "alerts", "alerting"})
    return (
        f"# {HEADER}\n# No node list: a board learns its name from DHCP and enrollment.\n"
        + tomlkit.dumps(data)
    )


def secrets_toml(secrets: Secrets) -> str:
    """The secrets file text for SECRETS (the master's: it holds the admin token)."""
    text = (
        "# bramble secrets: keep this file private (mode 0600), on the master only.\n"
        "[telemetry]\n"
        f"key_id = {json.dumps(secrets.telemetry_key_id)}\n"
        f'key = "{secrets.telemetry_key.hex()}"\n'
        "\n[admin]\n"
        f"token = {json.dumps(secrets.admin_token)}\n"
    )
    if secrets.join_token:
        text += f"\n[join]\ntoken = {json.dumps(secrets.join_token)}\n"
    if secrets.join_token and secrets.join_previous:
        text += (
            "# the token before the last rotation: boards flashed with it enroll until then\n"
            f"previous = {json.dumps(secrets.join_previous)}\n"
            f"previous_until = {secrets.join_previous_until!r}\n"
        )
    return text


def join_toml(spec: Spec, token: str) -> str:
    """The node image's join file: where the master is and the token that can only enroll."""
    return (
        f"# {HEADER}\n"
        "# All a board holds before it enrolls: this token can ask to enroll and nothing else.\n"
        "[join]\n"
        f"master = {json.dumps(enroll_url(spec))}\n"
        f"token = {json.dumps(token)}\n"
    )


def _render(template: str, **context: Any) -> str:
    return _env.get_template(template + ".j2").render(header=HEADER, **context)


def _ports(spec: Spec) -> tuple[list[int], list[int | str]]:
    from bramble.jobs.mpirun import MPI_PORTS

    udp = sorted({*_UDP_FIXED, spec.telemetry.port})
    tcp = sorted(
        {
            *_TCP_FIXED,
            spec.dashboard.port,
            spec.enroll_port,
            spec.jobs.scheduler_port,
            spec.jobs.dashboard_port,
        }
    )
    # `bramble mpirun` on the master: the nodes' OpenMPI daemons connect back to these.
    return udp, [*tcp, f"{MPI_PORTS.start}-{MPI_PORTS.stop - 1}"]


def _bramble_files(
    spec: Spec, secrets: Secrets | None, tls: Mapping[str, str], role: str, text: str | None
) -> dict[str, str]:
    if role == "master":
        files = {"etc/bramble/bramble.toml": spec_toml(spec) if text is None else text}
        if secrets is not None:
            files["etc/bramble/bramble.secrets.toml"] = secrets_toml(secrets)
    else:
        # Never the spec's text (it lists the nodes), never the secrets (the admin token).
        files = {"etc/bramble/bramble.toml": node_spec_toml(spec)}
        if secrets is not None and secrets.join_token:
            files[JOIN_FILE.lstrip("/")] = join_toml(spec, secrets.join_token)
    for name in MASTER_TLS if role == "master" else NODE_TLS:
        if name in tls:
            files[f"etc/bramble/tls/{name}"] = tls[name]
    return files


def render_master(
    spec: Spec,
    secrets: Secrets | None,
    tls: Mapping[str, str] | None = None,
    *,
    spec_text: str | None = None,
) -> dict[str, str]:
    """The master's files, keyed by path under the root (`etc/...`)."""
    net = spec.network
    common: dict[str, Any] = {
        "spec": spec,
        "net": net,
        "role": "master",
        "fqdn": spec.fqdn,
        "bramble": BRAMBLE,
        "spec_file": SPEC_FILE,
        "tls_dir": TLS_DIR,
        "nft_file": NFT_FILE,
    }
    udp, tcp = _ports(spec)
    fixed = [n for n in spec.nodes if n.address is not None]
    files = {
        "etc/dnsmasq.d/bramble.conf": _render("dnsmasq-bramble.conf", fixed_nodes=fixed, **common),
        "etc/exports.d/bramble.exports": _render("bramble.exports", **common),
        "etc/sysusers.d/bramble.conf": _render("sysusers-bramble.conf", **common),
        "etc/tmpfiles.d/bramble.conf": _render("tmpfiles-bramble.conf", **common),
        NFT_FILE.lstrip("/"): _render("bramble.nft", cluster_udp=udp, cluster_tcp=tcp, **common),
        "etc/systemd/system/bramble-nftables.service": _render(
            "bramble-nftables.service", **common
        ),
        "etc/sysctl.d/90-bramble.conf": _render("90-bramble.conf", **common),
        "etc/systemd/network/10-bramble-cluster.network": _render(
            "10-bramble-cluster.network", **common
        ),
        "etc/systemd/network/20-bramble-uplink.network": _render(
            "20-bramble-uplink.network", **common
        ),
        "etc/chrony/conf.d/bramble.conf": _render("chrony-bramble.conf", **common),
        "etc/systemd/system/bramble-master.service": _render("bramble-master.service", **common),
        "etc/systemd/system/bramble-scheduler.service": _render(
            "bramble-scheduler.service", **common
        ),
        "etc/systemd/system/bramble-agent.service": _render("bramble-agent.service", **common),
    }
    files.update(_bramble_files(spec, secrets, tls or {}, "master", spec_text))
    return files


def _share_units(spec: Spec, share: ShareSpec, common: dict[str, Any]) -> dict[str, str]:
    base = "etc/systemd/system/"
    return {
        base + unit_name(share.mount, ".mount"): _render("share.mount", share=share, **common),
        base + unit_name(share.mount, ".automount"): _render(
            "share.automount", share=share, **common
        ),
    }


def master_host(spec: Spec) -> str:
    """The master's address as the nodes reach it, on the cluster side."""
    bind = spec.dashboard.bind
    wildcard = bind in ("", "0.0.0.0") or bind.startswith("127.")
    return str(spec.network.master_address) if wildcard else bind


def master_url(spec: Spec) -> str:
    """The master's HTTP base URL as the nodes reach it, on the cluster side."""
    return f"http://{master_host(spec)}:{spec.dashboard.port}"


def enroll_url(spec: Spec) -> str:
    """Where the nodes enroll: the master's HTTPS enrollment port, on the cluster side (its
    certificate, signed by the cluster CA, names this address)."""
    return f"https://{master_host(spec)}:{spec.enroll_port}"


def dist_url(spec: Spec) -> str:
    """Where the nodes install bramble from: the master's /dist/ on the cluster side."""
    return master_url(spec) + "/dist/"


def render_node(
    spec: Spec,
    secrets: Secrets | None,
    tls: Mapping[str, str] | None = None,
    *,
    spec_text: str | None = None,
) -> dict[str, str]:
    """The node image's files, keyed by path under the root; the same for every node, and
    the same before and after a node is added (SPEC_TEXT, which lists the nodes, is unused)."""
    common: dict[str, Any] = {
        "spec": spec,
        "net": spec.network,
        "role": "node",
        "bramble": BRAMBLE,
        "spec_file": SPEC_FILE,
        "tls_dir": TLS_DIR,
    }
    files: dict[str, str] = {
        "etc/systemd/network/10-bramble-cluster.network": _render(
            "10-bramble-cluster.network", **common
        ),
        "etc/chrony/conf.d/bramble.conf": _render("chrony-bramble.conf", **common),
        "etc/sysusers.d/bramble.conf": _render("sysusers-bramble.conf", **common),
    }
    automounts = [unit_name(s.mount, ".automount") for s in spec.shares]
    for share in spec.shares:
        files.update(_share_units(spec, share, common))
    install = {"url": dist_url(spec), "venv": VENV, "installer": INSTALLER}
    files["etc/systemd/system/bramble-install.service"] = _render(
        "bramble-install.service", **install, **common
    )
    files["etc/systemd/system/bramble-enroll.service"] = _render(
        "bramble-enroll.service", join_file=JOIN_FILE, **common
    )
    files["etc/systemd/system/bramble-agent.service"] = _render("bramble-agent.service", **common)
    files["etc/systemd/system/bramble-worker.service"] = _render(
        "bramble-worker.service", automounts=automounts, **common
    )
    # the hourly check whether the master wants this board's keys rotated
    files["etc/systemd/system/bramble-rotate.service"] = _render(
        "bramble-rotate.service", credentials_file=CREDENTIALS_FILE, **common
    )
    files["etc/systemd/system/bramble-rotate.timer"] = _render("bramble-rotate.timer", **common)
    files.update(_bramble_files(spec, secrets, tls or {}, "node", spec_text))
    files[INSTALLER.lstrip("/")] = _render("bramble-install", **install, **common)
    return files


def user_data(spec: Spec, node_files: Mapping[str, str]) -> str:
    """cloud-init user-data installing bramble and every node file on a stock image."""
    entries = [
        _File("/" + path, text, "0600" if private(path) else "0644")
        for path, text in sorted(node_files.items())
    ]
    units = [
        "bramble-install.service",
        "bramble-enroll.service",
        "bramble-agent.service",
        "bramble-worker.service",
        "bramble-rotate.timer",
    ]
    units += [unit_name(s.mount, ".automount") for s in spec.shares]
    return _render("user-data", files=entries, units=units)


def render(
    spec: Spec,
    secrets: Secrets | None,
    tls: Mapping[str, str] | None = None,
    *,
    spec_text: str | None = None,
) -> dict[str, str]:
    """Every rendered file: `master/<path>` and `node/<path>` to text, plus `node/user-data`.

    TLS maps file names in the cluster's `tls/` directory (`ca.pem`, `worker.pem`, ...) to
    their text; each role gets the ones its services need. SPEC_TEXT, the spec file the
    SPEC was parsed from, is installed as `/etc/bramble/bramble.toml` when given, comments
    and all (so applying on a master whose spec lives there changes nothing); without it
    the spec is written out from the model.
    """
    master = render_master(spec, secrets, tls, spec_text=spec_text)
    out = {f"master/{k}": v for k, v in sorted(master.items())}
    node = render_node(spec, secrets, tls, spec_text=spec_text)
    out.update({f"node/{k}": v for k, v in sorted(node.items())})
    out[USER_DATA] = user_data(spec, node)
    return out


def read_tls(directory: Path) -> dict[str, str]:
    """The TLS files (`ca.pem`, `worker.pem`, ...) in DIRECTORY, those that exist."""
    found: dict[str, str] = {}
    for name in sorted({*MASTER_TLS, *NODE_TLS}):
        path = directory / name
        if path.is_file():
            found[name] = path.read_text("utf-8")
    return found


def render_cluster(cluster: Cluster) -> dict[str, str]:
    """Every rendered file of CLUSTER: its spec text as is, its secrets and TLS files if any."""
    tls = read_tls(cluster.tls.directory) if cluster.path is not None else {}
    return render(cluster.spec, cluster.secrets_if_present(), tls, spec_text=cluster.text)


def render_to_dir(cluster: Cluster, out: Path) -> dict[str, str]:
    """Render the cluster's trees into OUT/master and OUT/node, printing progress and a summary."""
    from rich.console import Console

    console = Console(highlight=False)
    files = render_cluster(cluster)
    for rel, text in files.items():
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(0o600 if private(rel) else 0o644)
        console.print(f"  wrote {target}")
    masters = sum(1 for k in files if k.startswith("master/"))
    nodes = len(files) - masters
    extra = (
        "" if cluster.secrets_if_present() else " (no secrets file beside the spec: none rendered)"
    )
    console.print(
        f"rendered {len(files)} files from {cluster.path}: {masters} in {out / 'master'}, "
        f"{nodes} in {out / 'node'} (flash {out / USER_DATA} as a node image's user-data)" + extra
    )
    log.info("rendered %d files into %s", len(files), out)
    return files
