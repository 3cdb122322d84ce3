"""The lab's plan: names, addresses and generated text, as pure functions of the spec.

Every name carries the lab's prefix so two labs and the host never collide: namespaces are
`brl-<prefix>-master`, `brl-<prefix>-switch` and `brl-<prefix>-<node>`; the only link in the
root namespace is the uplink veth end `brl-<prefix>-up` (at most 15 characters, the kernel's
limit for link names).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from bramble.errors import BrambleError
from bramble.spec import Spec, parse_spec

STATE_ROOT = Path("/run/bramble-lab")
DEFAULT_PREFIX = "lab"
PREFIX_RE = re.compile(r"^[a-z0-9]{1,8}$")
# Uplink /30s come from the carrier-grade NAT range, which a host rarely uses itself.
UPLINK_POOL = IPv4Network("100.64.0.0/10")
MAX_BUILTIN_NODES = 89  # fixed addresses .11 .. .99, below the spec's DHCP pool


def check_prefix(prefix: str) -> str:
    """PREFIX, if it is 1-8 lower-case letters or digits (link names must stay <= 15 chars)."""
    if not PREFIX_RE.match(prefix):
        raise BrambleError(
            f"lab prefix {prefix!r} must be 1-8 lower-case letters or digits (e.g. 'lab')"
        )
    return prefix


@dataclass(frozen=True, slots=True)
class NodePlan:
    """One lab node: its spec entry, namespace and switch port."""

    name: str
    mac: str
    address: IPv4Address | None
    netns: str
    port: str  # the node's veth end in the switch namespace


@dataclass(frozen=True, slots=True)
class LabPlan:
    """Everything the lab builds, named."""

    prefix: str
    state: Path
    master_ns: str
    switch_ns: str
    bridge: str
    master_port: str
    uplink_root: str  # the uplink veth end in the root namespace
    uplink_net: IPv4Network
    cluster_if: str
    uplink_if: str
    nodes: tuple[NodePlan, ...]

    @property
    def uplink_host(self) -> IPv4Address:
        """The root namespace's uplink address: the lab's 'internet'."""
        return next(iter(self.uplink_net.hosts()))

    @property
    def uplink_master(self) -> IPv4Address:
        """The master's uplink address."""
        return list(self.uplink_net.hosts())[1]

    def node(self, name: str) -> NodePlan:
        """The node called NAME; BrambleError naming the lab's nodes otherwise."""
        for node in self.nodes:
            if node.name == name:
                return node
        names = ", ".join(n.name for n in self.nodes)
        raise BrambleError(f"lab has no node {name!r} (nodes: {names})")

    def namespaces(self) -> list[str]:
        """Every namespace of the lab, master first."""
        return [self.master_ns, self.switch_ns, *(n.netns for n in self.nodes)]


@dataclass(frozen=True, slots=True)
class Lab:
    """A lab as recorded in its state directory: its plan, spec and dashboard URL."""

    plan: LabPlan
    spec: Spec
    spec_path: Path
    url: str
    jobs: bool = True
    dask_port: int = 0  # Dask's dashboard, forwarded to the host's loopback (0: none)
    join_token: str = ""  # what the lab's nodes enroll with ("": they use the shared key)


def ns_prefix(prefix: str) -> str:
    """The start of every namespace name of the lab PREFIX."""
    return f"brl-{prefix}-"


def uplink_net(prefix: str, used: set[IPv4Network]) -> IPv4Network:
    """A /30 of the carrier-grade NAT range for the lab PREFIX that overlaps nothing in USED.

    Chosen from a hash of the prefix so a lab keeps its addresses across `up`s.
    """
    count = UPLINK_POOL.num_addresses // 4
    start = zlib.crc32(prefix.encode()) % count
    for step in range(count):
        index = (start + step) % count
        net = IPv4Network((int(UPLINK_POOL.network_address) + 4 * index, 30))
        if not any(net.overlaps(other) for other in used):
            return net
    raise BrambleError("no free /30 in 100.64.0.0/10 for the lab's uplink")


def plan(spec: Spec, prefix: str, used: set[IPv4Network]) -> LabPlan:
    """The lab for SPEC under PREFIX, avoiding the root namespace's networks USED."""
    check_prefix(prefix)
    base = ns_prefix(prefix)
    for n in spec.nodes:
        if n.name in ("master", "switch", spec.master.name):
            raise BrambleError(
                f"node name {n.name!r} is taken by the lab's master or switch: rename the node"
            )
    nodes = tuple(
        NodePlan(
            name=n.name,
            mac=n.mac,
            address=n.address,
            netns=base + n.name,
            port=f"n{i}",
        )
        for i, n in enumerate(spec.nodes)
    )
    return LabPlan(
        prefix=prefix,
        state=STATE_ROOT / prefix,
        master_ns=base + "master",
        switch_ns=base + "switch",
        bridge="br0",
        master_port="m0",
        uplink_root=f"brl-{prefix}-up",
        uplink_net=uplink_net(prefix, used),
        cluster_if=spec.network.cluster_interface,
        uplink_if=spec.network.uplink_interface,
        nodes=nodes,
    )


def extra_nodes(plan: LabPlan, extra: list[dict[str, str]]) -> tuple[NodePlan, ...]:
    """The boards plugged into PLAN's lab with a MAC its spec does not know (`lab add
    --mac`): EXTRA as the lab's state records them, each {"name", "mac"}."""
    base = plan.master_ns.removesuffix("master")
    return tuple(
        NodePlan(name=e["name"], mac=e["mac"], address=None, netns=base + e["name"], port=f"x{i}")
        for i, e in enumerate(extra)
    )


def builtin_spec_text(nodes: int, *, interval: float = 1.0) -> str:
    """The built-in lab spec: NODES nodes node-1..N with MACs 02:b7:... and fixed addresses."""
    if not 1 <= nodes <= MAX_BUILTIN_NODES:
        raise BrambleError(f"--nodes must be between 1 and {MAX_BUILTIN_NODES}")
    lines = [
        "# bramble lab: the built-in lab cluster",
        "[telemetry]",
        f"interval = {interval}",
        "",
    ]
    for i in range(1, nodes + 1):
        lines += [
            "[[nodes]]",
            f'name = "node-{i}"',
            f'mac = "02:b7:00:00:{i // 256:02x}:{i % 256:02x}"',
            f'address = "10.42.0.{10 + i}"',
            "",
        ]
    return "\n".join(lines)


def builtin_spec(nodes: int) -> Spec:
    """The built-in lab spec as a normal Spec, so the same render path applies."""
    return parse_spec(builtin_spec_text(nodes), file="lab.toml")


def lab_spec(spec: Spec, state: Path) -> Spec:
    """SPEC as the lab's master runs it: only the history, the wheels it serves its nodes and
    the DHCP leases it enrolls them by move into the lab's state."""
    history = spec.history.model_copy(update={"path": str(state / "master" / "history.db")})
    software = spec.software.model_copy(update={"wheels_dir": str(wheels_dir(state))})
    enroll = spec.enroll.model_copy(update={"lease_file": str(lease_file(state))})
    return spec.model_copy(update={"history": history, "software": software, "enroll": enroll})


def lease_file(state: Path) -> Path:
    """Where the lab's dnsmasq keeps its leases (and the master reads them to enroll)."""
    return state / "master" / "dnsmasq.leases"


def wheels_dir(state: Path) -> Path:
    """The master's wheels directory in the lab (software.wheels_dir on hardware)."""
    return state / "master" / "wheels"


def node_venv(node_dir: Path) -> Path:
    """Where a node's /opt/bramble lives in the lab (each node has its own, as a board does)."""
    return node_dir / "opt" / "bramble"


def lab_shares(spec: Spec, state: Path) -> list[tuple[Path, str]]:
    """Each share of SPEC as (the lab's export directory, the mount point)."""
    return [(export_dir(state, s.export), s.mount) for s in spec.shares]


def export_dir(state: Path, export: str) -> Path:
    """Where the lab keeps the share exported as EXPORT (a directory of the lab's state)."""
    return state / "master" / "export" / export.strip("/")


def adapt_dnsmasq(text: str, state: Path) -> str:
    """The rendered dnsmasq config with its lease file moved into the lab's state, and
    without the ping check of pool addresses.

    Interface names match because the lab names the master's interfaces as the spec does.
    Before it offers an address of its pool (a board `lab add` plugs in has no fixed
    address), dnsmasq pings it and waits 3 s for an answer, in case a host it does not know
    holds it; on the lab's switch every host is one of the lab's, given its address by this
    dnsmasq, so the lab turns that off (`no-ping`). A real cluster keeps it: a board not
    yet given a fixed address (`bramble apply --role master` after `nodes add`) waits those
    3 s once, at its first lease.
    """
    lease = lease_file(state)
    text = re.sub(r"(?m)^dhcp-leasefile=.*$", f"dhcp-leasefile={lease}", text)
    return text + "\n# the lab: every host on its switch is its own (see adapt_dnsmasq)\nno-ping\n"


def ganesha_conf(spec: Spec, state: Path) -> str:
    """nfs-ganesha config: NFSv4 only, each share exported with pseudo path = export path.

    The kernel here has no NFS server, so the lab serves the shares with nfs-ganesha in the
    foreground; RQUOTA, NLM and Kerberos are off, and grace is skipped so a fresh lab serves
    at once.
    """
    parts = [
        "NFS_CORE_PARAM { Protocols = 4; Enable_RQUOTA = false; Enable_NLM = false; }",
        "NFS_KRB5 { Active_krb5 = false; }",
        f'NFSv4 {{ Graceless = true; RecoveryBackend = "fs"; RecoveryRoot = "{state}/ganesha"; }}',
    ]
    for export_id, share in enumerate(spec.shares, start=1):
        path = export_dir(state, share.export)
        parts.append(
            "EXPORT {\n"
            f"  Export_Id = {export_id};\n"
            f'  Path = "{path}";\n'
            f'  Pseudo = "{share.export}";\n'
            "  Access_Type = RW;\n"
            "  Squash = No_Root_Squash;\n"
            "  Protocols = 4;\n"
            '  SecType = "sys";\n'
            "  FSAL { Name = VFS; }\n"
            "}"
        )
    return "\n".join(parts) + "\n"


def udhcpc_script(node_dir: Path) -> str:
    """The busybox udhcpc script: configure eth0, set the hostname from DHCP, write resolv.conf.

    On `bound` it writes NODE_DIR/lease last, which tells the lab the node is on the network.
    """
    return f"""#!/bin/sh
# bramble lab: udhcpc event script for one node
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    rm -f {node_dir}/lease
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${{mask:-24}}" dev "$interface"
    for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
    [ -n "$hostname" ] && hostname "$hostname"
    {{
        [ -n "$domain" ] && echo "search $domain"
        for d in $dns; do echo "nameserver $d"; done
    }} > {node_dir}/resolv.conf
    echo "$ip $hostname" > {node_dir}/lease.tmp && mv {node_dir}/lease.tmp {node_dir}/lease
    ;;
esac
exit 0
"""


def node_init_script(node: NodePlan, node_dir: Path, shares: list[tuple[Path, str]]) -> str:
    """The shell run as a node's first process in its own UTS and mount namespaces.

    The kernel has no NFS client, so each share appears at its mount point through a bind
    mount of the master's export directory; a tmpfs over the parent keeps the host's tree
    untouched. /etc/resolv.conf becomes the node's own file, written by udhcpc.
    """
    lines = ["set -e", "hostname localhost"]
    lines.append(f": > {node_dir}/resolv.conf")
    lines.append(f"mount --bind {node_dir}/resolv.conf /etc/resolv.conf")
    lines += share_mounts(shares)
    lines += own_opt_bramble(node_dir)
    lines.append("exec sleep infinity")
    return "\n".join(lines) + "\n"


def own_opt_bramble(node_dir: Path) -> list[str]:
    """Shell lines giving the node a /opt/bramble of its own, where it installs bramble as a
    board does: an overlay keeps the host's /opt visible and unchanged beneath it. Without
    overlayfs the node simply has none."""
    opt, venv = node_dir / "opt", node_venv(node_dir)
    return [
        f"mkdir -p {opt}/upper {opt}/work {venv}",
        f"if mount -t overlay bramble-lab -o lowerdir=/opt,upperdir={opt}/upper,"
        f"workdir={opt}/work /opt; then",
        f"    mkdir -p /opt/bramble && mount --bind {venv} /opt/bramble",
        "fi",
    ]


def share_mounts(shares: list[tuple[Path, str]]) -> list[str]:
    """Shell lines putting each share (export directory, mount point) at its mount point.

    Run only in a private mount namespace: a tmpfs over the mount point's parent keeps the
    host's tree untouched, and the bind mount stands in for the NFS mount.
    """
    lines = []
    for source, mount in shares:
        parent = str(Path(mount).parent)
        lines.append(f"mount -t tmpfs bramble-lab {parent} || true")
        lines.append(f"mkdir -p {mount}")
        lines.append(f"mount --bind {source} {mount}")
    return lines


def with_shares(shares: list[tuple[Path, str]], argv: list[str]) -> list[str]:
    """ARGV run with the shares mounted as on a node (for the master's own processes).

    On hardware the master reads the jobs it runs at the same path as the nodes (the share's
    mount point); in the lab its processes run under `ip netns exec`, which gives each a
    private mount namespace (slave of the host's), where the same bind mounts are made.
    """
    script = "\n".join(["set -e", *share_mounts(shares), 'exec "$@"'])
    return ["sh", "-c", script, "bramble-lab-shares", *argv]
