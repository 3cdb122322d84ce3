"""Building a lab: its network, the master's daemons and the nodes' boot.

The lab runs the real daemons on the configs `bramble render` makes for hardware; it changes
only interface names and paths (noted where it does).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bramble.errors import BrambleError
from bramble.jobs.account import job_account
from bramble.jobs.config import ENV_DASK_DASHBOARD
from bramble.jobs.servers import node_resources
from bramble.lab import board, daemons, netns, topology
from bramble.lab.topology import Lab, LabPlan
from bramble.spec import Secrets, Spec

Say = Callable[[str], None]
MASTER_DAEMONS = ("dnsmasq", "ganesha", "master", "proxy")
# The Dask scheduler runs on the master, a Dask worker on every node, unless `--no-jobs`.
# daskproxy forwards Dask's own dashboard to the host, as proxy does the master's.
JOB_DAEMONS = ("scheduler", "daskproxy")
NFS_CHECK_FILE = ".bramble-lab-check"
NFS_CHECK_TEXT = "bramble lab: served over NFSv4 by nfs-ganesha\n"


def start_supervisor(plan: LabPlan) -> int:
    """Start the lab's supervisor, which restarts a daemon that exits while wanted."""
    run = plan.state / "run"
    argv = [sys.executable, "-m", "bramble.lab.supervise", str(run)]
    return daemons.start(run, "supervisor", argv, supervise=False)


def build_network(plan: LabPlan, spec: Spec, say: Say) -> None:
    """The switch (a bridge in its own namespace), the master's cluster port and uplink."""
    say("network: namespaces, switch, uplink")
    netns.batch([f"netns add {ns}" for ns in (plan.master_ns, plan.switch_ns)])
    sw = plan.switch_ns
    lines = [
        f"link add {plan.bridge} type bridge mcast_snooping 0",
        f"link set {plan.bridge} up",
        "link set lo up",
        # The lab names the master's interfaces as the spec does, so the rendered configs
        # (dnsmasq's interface=, nftables' iifname) apply unchanged.
        f"link add {plan.master_port} type veth peer name {plan.cluster_if} netns {plan.master_ns}",
        f"link set {plan.master_port} master {plan.bridge} up",
    ]
    netns.batch(lines, ns=sw)
    netns.batch(
        [
            f"link add {plan.uplink_root} type veth peer name {plan.uplink_if} "
            f"netns {plan.master_ns}",
            f"addr add {plan.uplink_host}/30 dev {plan.uplink_root}",
            f"link set {plan.uplink_root} up",
        ]
    )
    net = spec.network
    netns.batch(
        [
            "link set lo up",
            f"addr add {net.master_address}/{net.subnet.prefixlen} dev {plan.cluster_if}",
            f"link set {plan.cluster_if} up",
            f"addr add {plan.uplink_master}/30 dev {plan.uplink_if}",
            f"link set {plan.uplink_if} up",
            f"route add default via {plan.uplink_host}",
            # Telemetry multicast belongs on the cluster LAN, not the default (uplink) route.
            f"route add 224.0.0.0/4 dev {plan.cluster_if}",
        ],
        ns=plan.master_ns,
    )
    netns.run(["ip", "netns", "exec", plan.master_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
    say(
        f"  switch {plan.switch_ns}/{plan.bridge}, master {plan.master_ns}, uplink "
        f"{plan.uplink_root} {plan.uplink_host} <-> {plan.uplink_master}"
    )


def build_nodes(plan: LabPlan, say: Say) -> None:
    """One namespace per node, its eth0 (with the spec's MAC) cabled to the switch."""
    say(f"nodes: {len(plan.nodes)} namespaces cabled to the switch")
    netns.batch([f"netns add {node.netns}" for node in plan.nodes])
    lines = []
    for node in plan.nodes:
        lines += [
            f"link add {node.port} type veth peer name eth0 netns {node.netns} address {node.mac}",
            f"link set {node.port} master {plan.bridge} up",
        ]
    netns.batch(lines, ns=plan.switch_ns)
    for node in plan.nodes:
        netns.batch(["link set lo up", "link set eth0 up"], ns=node.netns)


def rendered(spec: Spec, secrets: Secrets) -> tuple[str, str]:
    """The rendered dnsmasq config and nftables ruleset of the master, as hardware gets them."""
    from bramble.provision.render import render

    files = render(spec, secrets)
    dnsmasq = next(v for k, v in files.items() if k.startswith("master/") and "dnsmasq" in k)
    nft = next(v for k, v in files.items() if k.startswith("master/") and k.endswith(".nft"))
    return dnsmasq, nft


def master_daemons(jobs: bool) -> tuple[str, ...]:
    """The master's daemons in a lab with or without JOBS."""
    return (*MASTER_DAEMONS, *JOB_DAEMONS) if jobs else MASTER_DAEMONS


def start_master(
    plan: LabPlan,
    spec: Spec,
    secrets: Secrets,
    spec_path: Path,
    http_port: int,
    say: Say,
    *,
    jobs: bool = True,
    dask_port: int = 0,
) -> None:
    """Write the master's configs into the lab state and start its daemons.

    With JOBS, Dask's dashboard is forwarded to DASK_PORT on the host's loopback, and the
    master's jobs panel links there (the cluster's address is not the host's).
    """
    state, ns = plan.state, plan.master_ns
    account = job_account() if jobs else None
    for share in spec.shares:
        export = topology.export_dir(state, share.export)
        export.mkdir(parents=True, exist_ok=True)
        if account is not None:  # as tmpfiles makes it on a real master: jobs write there
            os.chown(export, account.uid, account.gid)
    # The master service starts first: its imports take the longest, and nodes are
    # visible only once it listens.
    start_master_daemons(plan, spec, spec_path, http_port, ("master", "proxy"), dask_port)
    dnsmasq_text, nft_text = rendered(spec, secrets)
    say(
        "master: bramble master, dashboard proxy, nftables NAT, dnsmasq, nfs-ganesha"
        + (", Dask scheduler (TLS)" if jobs else "")
    )
    nft_file = state / "master" / "bramble.nft"
    nft_file.write_text(nft_text)
    netns.run(daemons.in_netns(ns, ["nft", "-f", str(nft_file)]))
    conf = state / "master" / "dnsmasq.conf"
    conf.write_text(topology.adapt_dnsmasq(dnsmasq_text, state))
    first = topology.export_dir(state, spec.shares[0].export)
    (first / NFS_CHECK_FILE).write_text(NFS_CHECK_TEXT)
    (state / "ganesha").mkdir(exist_ok=True)
    (state / "master" / "ganesha.conf").write_text(topology.ganesha_conf(spec, state))
    start_master_daemons(
        plan,
        spec,
        spec_path,
        http_port,
        ("dnsmasq", "ganesha", *(JOB_DAEMONS if jobs else ())),
        dask_port,
    )
    say(f"  started in {ns}")


def master_argv(
    plan: LabPlan, spec: Spec, spec_path: Path, http_port: int, dask_port: int = 0
) -> dict[str, list[str]]:
    """The command line of each master daemon (SPEC, written at SPEC_PATH), each run in the
    master namespace."""
    state, ns = plan.state, plan.master_ns
    bind = spec.dashboard_bind if spec.dashboard_bind != "0.0.0.0" else "127.0.0.1"
    master = daemons.bramble_argv("master", "--spec", str(spec_path))
    if dask_port:
        dask_link = f"http://127.0.0.1:{dask_port}/status"
        master = ["env", f"{ENV_DASK_DASHBOARD}={dask_link}", *master]
    return {
        "dnsmasq": daemons.in_netns(
            ns,
            [
                "dnsmasq",
                "--keep-in-foreground",
                "--log-facility=-",
                "--user=root",
                f"--conf-file={state / 'master' / 'dnsmasq.conf'}",
                "--pid-file=",
            ],
        ),
        "ganesha": daemons.in_netns(
            ns,
            [
                "ganesha.nfsd",
                "-F",
                "-f",
                str(state / "master" / "ganesha.conf"),
                "-L",
                str(state / "run" / "ganesha.nfsd.log"),
                "-p",
                str(state / "run" / "ganesha.nfsd.pid"),
                "-N",
                "NIV_EVENT",
            ],
        ),
        # The master runs job drivers, which read job files at the share's mount point.
        "master": daemons.in_netns(
            ns, topology.with_shares(topology.lab_shares(spec, state), master)
        ),
        "scheduler": daemons.in_netns(
            ns, daemons.bramble_argv("scheduler", "--spec", str(spec_path))
        ),
        "proxy": [
            sys.executable,
            "-m",
            "bramble.lab.proxy",
            "127.0.0.1",
            str(http_port),
            ns,
            bind,
            str(spec.dashboard.port),
        ],
        "daskproxy": [
            sys.executable,
            "-m",
            "bramble.lab.proxy",
            "127.0.0.1",
            str(dask_port),
            ns,
            str(spec.network.master_address),
            str(spec.jobs.dashboard_port),
        ],
    }


def start_master_daemons(
    plan: LabPlan,
    spec: Spec,
    spec_path: Path,
    http_port: int,
    only: Sequence[str] = MASTER_DAEMONS,
    dask_port: int = 0,
) -> None:
    """Start the master daemons ONLY (all by default)."""
    argv = master_argv(plan, spec, spec_path, http_port, dask_port)
    for name in only:
        daemons.start(plan.state / "run", name, argv[name])


def boot_nodes(
    lab: Lab, names: Sequence[str], say: Say, *, enroll_timeout: float = 30.0
) -> list[str]:
    """Power on NAMES: first process in fresh UTS and mount namespaces, DHCP, enrollment,
    then the agent. The nodes whose agent started (a node still waiting for approval has
    none: `lab start` it once approved)."""
    plan, run = lab.plan, lab.plan.state / "run"
    say(f"nodes: DHCP (udhcpc) and agents for {len(names)} node(s)")
    if lab.spec.telemetry.engine != "python":
        from bramble.telemetry import native

        say(f"  agents: {native.prepare()}")
    holders: dict[str, int] = {}
    for name in names:
        node = plan.node(name)
        node_dir = plan.state / "nodes" / name
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "stopped").unlink(missing_ok=True)
        (node_dir / "lease").unlink(missing_ok=True)
        holder = daemons.running(run, f"{name}.init")
        if holder is None:
            shares = topology.lab_shares(lab.spec, plan.state)
            script = topology.node_init_script(node, node_dir, shares)
            holder = daemons.start(
                run,
                f"{name}.init",
                daemons.in_netns(
                    node.netns,
                    ["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", script],
                ),
                # The node's first process holds its namespaces: never restarted behind
                # the node's processes' backs.
                supervise=False,
            )
        holders[name] = holder
        script_file = node_dir / "udhcpc.sh"
        script_file.write_text(topology.udhcpc_script(node_dir))
        script_file.chmod(0o755)
    for name, holder in holders.items():
        wait_sleeping(holder, name)
        netns.ip("link", "set", "eth0", "up", ns=plan.node(name).netns)
        daemons.start(
            run,
            f"{name}.udhcpc",
            daemons.in_node(
                holder,
                [
                    "busybox",
                    "udhcpc",
                    "-f",
                    "-i",
                    "eth0",
                    "-s",
                    str(plan.state / "nodes" / name / "udhcpc.sh"),
                    "-t",
                    "20",
                    "-T",
                    "1",
                    "-A",
                    "1",
                ],
            ),
        )
    leases: dict[str, tuple[str, str]] = {}
    for name in holders:
        lease = plan.state / "nodes" / name / "lease"
        if not daemons.wait_for(lease, 30):
            raise BrambleError(
                f"{name} got no DHCP lease from dnsmasq in 30 s "
                f"(see {run / (name + '.udhcpc.log')})"
            )
        address, _, hostname = lease.read_text().strip().partition(" ")
        leases[name] = (address, hostname)
    keys = enroll_nodes(lab, holders, say, enroll_timeout)
    started = []
    for name, holder in holders.items():
        address, hostname = leases[name]
        key: Path | None = None
        if keys is not None:
            if name not in keys:
                say(
                    f"  {name}: {address}, waits for approval: `bramble nodes approve "
                    f"{plan.node(name).mac}`, then `bramble lab start {name}`"
                )
                continue
            key, hostname = keys[name]  # the name the master enrolled it under
        boot = next_boot(plan.state / "nodes" / name)
        firmware = board.power_on(plan.state / "nodes" / name)
        daemons.start(
            run,
            f"{name}.agent",
            daemons.in_node(
                holder,
                daemons.agent_argv(lab.spec, lab.spec_path, hostname, boot, key, firmware),
            ),
        )
        how = "its own key" if key is not None else "the shared key"
        say(f"  {name}: {address} hostname {hostname}, agent boot {boot}, {how}")
        started.append(name)
    return started


def enroll_nodes(
    lab: Lab, holders: dict[str, int], say: Say, timeout: float
) -> dict[str, tuple[Path, str]] | None:
    """Enroll each node of HOLDERS with the master as a board does (`bramble enroll` in the
    node, with the node image's spec and join file): its own key, made in the node. Each
    enrolled node's credentials file and name; None when the lab's secrets have no join
    token (the nodes then sign with the shared key)."""
    import subprocess

    from bramble.provision.render import join_toml, node_spec_toml
    from bramble.trust.node import CREDENTIALS, JOIN, read_identity

    if not lab.join_token:
        return None
    started: dict[str, subprocess.Popen[bytes]] = {}
    for name, holder in holders.items():
        node_dir = lab.plan.state / "nodes" / name
        (node_dir / "bramble.toml").write_text(node_spec_toml(lab.spec))
        (node_dir / JOIN).write_text(join_toml(lab.spec, lab.join_token))
        (node_dir / JOIN).chmod(0o600)
        ca = lab.plan.state / "tls" / "ca.pem"
        if ca.exists():  # the node image's one TLS file; enrollment adds the worker's own
            (node_dir / "tls").mkdir(mode=0o700, exist_ok=True)
            (node_dir / "tls" / "ca.pem").write_bytes(ca.read_bytes())
        argv = daemons.bramble_argv(
            "enroll", "--spec", str(node_dir / "bramble.toml"), "--mac", lab.plan.node(name).mac
        )
        with open(lab.plan.state / "run" / f"{name}.enroll.log", "ab") as log:
            started[name] = subprocess.Popen(
                daemons.in_node(holder, argv), stdout=log, stderr=subprocess.STDOUT
            )
    deadline = time.monotonic() + timeout
    keys: dict[str, tuple[Path, str]] = {}
    for name, proc in started.items():
        path = lab.plan.state / "nodes" / name / CREDENTIALS
        # The credentials file is written whole (renamed into place) once the node is
        # enrolled: its agent may start then, while `bramble enroll` is still exiting.
        while not path.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if not path.exists() and proc.poll() is None:
            proc.kill()
            proc.wait()
        identity = read_identity(path)
        if identity is None:
            say(f"  {name}: not enrolled in {timeout:.0f} s (see run/{name}.enroll.log)")
            continue
        keys[name] = (path, identity.name)
    say(f"enrollment: {len(keys)}/{len(started)} node(s) enrolled with their own keys")
    return keys


def worker_argv(lab: Lab, hostname: str, spec_path: Path | None = None) -> list[str]:
    """A lab node's Dask worker: light, one thread, a share of the host's RAM as its limit.

    Many nodes share one machine: each gets one thread (a node's own cores are the host's,
    counted once per node otherwise) and RAM / nodes as its memory limit, so Dask pauses
    and spills a node's work before the host runs out, as on a board. SPEC_PATH: the node's
    own spec, beside the TLS files its enrollment left (its own worker certificate), else
    the lab's (the lab's shared worker certificate).
    """
    _, ram = node_resources()
    share = ram // max(1, len(lab.plan.nodes))
    return daemons.bramble_argv(
        "worker",
        "--spec",
        str(spec_path or lab.spec_path),
        "--name",
        hostname,
        "--nthreads",
        "1",
        "--memory-limit",
        str(share),
        "--light",
    )


def start_workers(lab: Lab, names: Sequence[str], say: Say) -> None:
    """Start the Dask worker of each running node in NAMES, named after its hostname.

    Each has its own certificate, from its enrollment, or else the lab's shared one (see
    `worker_argv`).
    """
    run = lab.plan.state / "run"
    started = []
    for name in names:
        holder = daemons.running(run, f"{name}.init")
        lease = lab.plan.state / "nodes" / name / "lease"
        if holder is None or not lease.exists():
            continue
        hostname = lease.read_text().strip().partition(" ")[2] or name
        node_dir = lab.plan.state / "nodes" / name
        own = node_dir / "tls" / "worker.pem"
        argv = worker_argv(lab, hostname, node_dir / "bramble.toml" if own.exists() else None)
        daemons.start(run, f"{name}.worker", daemons.in_node(holder, argv))
        started.append(name)
    if started:
        master = lab.spec.network.master_address
        say(f"Dask workers starting on {len(started)} node(s), connecting to {master} with TLS")


def wait_nodes_up(lab: Lab, count: int, timeout: float) -> int:
    """Wait until COUNT nodes are `up` on the master's API; how many are."""
    import httpx

    deadline = time.monotonic() + timeout
    up_now = 0
    while time.monotonic() < deadline:
        try:
            nodes = httpx.get(lab.url + "api/nodes", timeout=2).json()
            up_now = sum(1 for n in nodes if n.get("status") == "up")
        except (httpx.HTTPError, ValueError):
            up_now = 0
        if up_now >= count:
            break
        time.sleep(0.1)
    return up_now


def wait_sleeping(pid: int, name: str) -> None:
    """Wait until a node's first process has set up its namespaces (it then sleeps)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            comm = ""
        if comm == "sleep":
            return
        if not netns.alive(pid):
            break
        time.sleep(0.02)
    raise BrambleError(f"{name}: its namespaces did not come up (see the lab's run/ logs)")


def next_boot(node_dir: Path) -> int:
    """A boot id for a node's new run: now, and always more than its last one."""
    last_file = node_dir / "boot"
    try:
        last = int(last_file.read_text())
    except (OSError, ValueError):
        last = 0
    boot = max(int(time.time()), last + 1)
    last_file.write_text(str(boot))
    return boot
