"""`bramble lab ...`: build, inspect, fault and remove a lab cluster (the CLI edge; it prints).

The lab runs the real daemons on the configs `bramble render` makes for hardware; it changes
only interface names and paths (noted where it does).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import replace
from ipaddress import IPv4Network
from pathlib import Path

from bramble.cluster import Cluster, load_cluster
from bramble.errors import BrambleError
from bramble.lab import build, capacity, daemons, netns, topology
from bramble.lab.build import NFS_CHECK_FILE, NFS_CHECK_TEXT, Say, master_daemons
from bramble.lab.topology import Lab, NodePlan
from bramble.spec import Secrets, Spec, parse_secrets

log = logging.getLogger(__name__)

PREFIX_ENV = "BRAMBLE_LAB_PREFIX"
# The programs the lab starts (directly or through ip netns exec / nsenter).
LAB_PROGRAMS = frozenset(
    {
        "ip",
        "nsenter",
        "unshare",
        "sh",
        "sleep",
        "dnsmasq",
        "ganesha.nfsd",
        "busybox",
        "nft",
        "bramble-agent",
    }
)


def _say(text: str) -> None:
    print(text, flush=True)


def prefix_of(prefix: str | None) -> str:
    """The lab prefix: PREFIX, else $BRAMBLE_LAB_PREFIX, else 'lab'."""
    return topology.check_prefix(prefix or os.environ.get(PREFIX_ENV) or topology.DEFAULT_PREFIX)


def lab_available() -> str:
    """'' when a lab can run here, else the one-line reason why not."""
    if os.geteuid() != 0:
        return "not root, so no network namespaces"
    error = netns.missing_tool()
    return str(error) if error else ""


def _state_file(state: Path) -> Path:
    return state / "lab.json"


def labs_up() -> list[str]:
    """The prefixes of the labs whose state is recorded on this machine, sorted."""
    try:
        entries = list(topology.STATE_ROOT.iterdir())
    except OSError:
        return []
    return sorted(e.name for e in entries if _state_file(e).is_file())


def load_lab(prefix: str | None) -> Lab:
    """The running lab PREFIX from its state; BrambleError if there is none.

    Without a prefix (no --prefix, no $BRAMBLE_LAB_PREFIX) and no lab 'lab', the one lab
    that is up is meant (`bramble demo`'s is 'demo'); with several, the error names them.
    """
    name = prefix_of(prefix)
    state = topology.STATE_ROOT / name
    given = prefix or os.environ.get(PREFIX_ENV)
    if not given and not _state_file(state).is_file():
        others = labs_up()
        if len(others) == 1:
            name = others[0]
            state = topology.STATE_ROOT / name
        elif others:
            names = ", ".join(repr(o) for o in others)
            raise BrambleError(
                f"no lab {name!r} is up; these are: {names}: name one with --prefix "
                f"(e.g. --prefix {others[0]}) or $BRAMBLE_LAB_PREFIX"
            )
    try:
        data = json.loads(_state_file(state).read_text())
    except (OSError, ValueError):
        raise BrambleError(f"no lab {name!r} is up (start one with `bramble lab up`)") from None
    spec_path = Path(data["spec"])
    cluster = load_cluster(spec_path)
    spec = cluster.spec
    secrets = cluster.secrets_if_present()
    used = {IPv4Network(data["uplink"])}
    plan = replace(topology.plan(spec, name, used), uplink_net=next(iter(used)))
    extra = topology.extra_nodes(plan, data.get("extra", []))
    plan = replace(plan, nodes=plan.nodes + extra)
    return Lab(
        plan=plan,
        spec=spec,
        spec_path=spec_path,
        url=data["url"],
        jobs=data.get("jobs", False),
        dask_port=data.get("dask_port", 0),
        join_token=secrets.join_token if secrets is not None else "",
    )


# --- up ---------------------------------------------------------------------------------


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise BrambleError("no free TCP port on 127.0.0.1 for the dashboard")


def _source_spec(source: Cluster | None, nodes: int | None) -> tuple[Spec, Secrets | None]:
    """The lab's spec and secrets: SOURCE's (its first NODES nodes), or the built-in spec's."""
    if source is None:
        if nodes is None:
            raise BrambleError("give the lab a spec (--spec) or a number of nodes (--nodes N)")
        return topology.builtin_spec(nodes), None
    spec = source.spec
    if nodes is not None and nodes != len(spec.nodes):
        spec = spec.model_copy(update={"nodes": spec.nodes[:nodes]})
        if len(spec.nodes) < nodes:
            raise BrambleError(
                f"{source.path} has only {len(spec.nodes)} nodes, --nodes asks {nodes}"
            )
    return spec, source.secrets()


def _lab_tls(source: Cluster | None, state: Path, say: Say) -> None:
    """The cluster's TLS material for the lab: the source spec's (from `bramble init`), else new.

    With the source spec's certificates, a client set up for that spec also reaches the lab.
    """
    from bramble.jobs.tls import create_cluster_tls

    target = state / "tls"
    if source is not None and source.path is not None and source.tls.ca_cert.exists():
        shutil.copytree(source.tls.directory, target, dirs_exist_ok=True)
        say(f"  TLS: the cluster CA and certificates of {source.path.parent}")
        return
    create_cluster_tls(target, cluster="lab")
    say("  TLS: a new cluster CA and certificates for the lab")


def _write_spec(spec: Spec, secrets: Secrets | None, state: Path) -> tuple[Path, Secrets]:
    """The lab's spec and secrets files in STATE (new secrets if SECRETS is None)."""
    from bramble.init import secrets_text
    from bramble.provision.render import secrets_toml, spec_toml

    path = state / "bramble.toml"
    path.write_text(spec_toml(spec))
    secrets_file = state / "bramble.secrets.toml"
    text = secrets_toml(secrets) if secrets else secrets_text()
    secrets_file.write_text(text)
    secrets_file.chmod(0o600)
    return path, secrets or parse_secrets(text, str(secrets_file))


def problems(lab: Lab) -> list[str]:
    """What is wrong with a recorded lab (empty when all is running)."""
    problems: list[str] = []
    present = set(netns.namespaces())
    problems += [f"namespace {ns} missing" for ns in lab.plan.namespaces() if ns not in present]
    run = lab.plan.state / "run"
    problems += [
        f"{d} not running"
        for d in (*master_daemons(lab.jobs), "supervisor")
        if daemons.running(run, d) is None and (d == "supervisor" or (run / f"{d}.argv").exists())
    ]
    for node in lab.plan.nodes:
        if (lab.plan.state / "nodes" / node.name / "stopped").exists():
            continue
        for d in ("init", "udhcpc", "agent", *(("worker",) if lab.jobs else ())):
            if daemons.running(run, f"{node.name}.{d}") is None:
                problems.append(f"{node.name} {d} not running")
    return problems


def up(
    source: Cluster | None,
    *,
    nodes: int | None = None,
    prefix: str | None = None,
    port: int | None = None,
    jobs: bool = True,
    say: Say = _say,
) -> Lab:
    """Create the lab (idempotent: a healthy lab is left alone, a broken one rebuilt).

    The lab runs SOURCE's nodes (the first NODES of them), or with no SOURCE the built-in
    spec's NODES nodes. With JOBS, the master also runs the Dask scheduler and every node a
    Dask worker.
    """
    netns.require_tools()
    if os.geteuid() != 0:
        raise BrambleError("the lab needs root (network namespaces): run it with sudo")
    name = prefix_of(prefix)
    try:
        lab = load_lab(name)
    except BrambleError:
        lab = None
    if lab is not None and not problems(lab):
        say(f"lab {name!r} is already up: {lab.url}")
        return lab
    if lab is not None or _leftovers(name):
        say(f"cleaning up the leftovers of lab {name!r}")
        down(prefix=name, say=say)
    started = time.monotonic()
    spec, secrets = _source_spec(source, nodes)
    if not spec.nodes:
        raise BrambleError("the lab spec has no nodes (add [[nodes]] or pass --nodes N)")
    jobs = jobs and spec.jobs.tls  # the lab runs Dask only with the TLS the spec asks for
    need = capacity.Need(len(spec.nodes), jobs)
    capacity.check_machine(need)
    plan = topology.plan(spec, name, netns.root_networks())
    for line in capacity.size_neighbour_tables(need):
        say(f"kernel: {line} (shared by every namespace; {len(spec.nodes)} nodes)")
    state = plan.state
    (state / "run").mkdir(parents=True, exist_ok=True)
    (state / "master").mkdir(parents=True, exist_ok=True)
    spec = topology.lab_spec(spec, state)
    path, secrets = _write_spec(spec, secrets, state)
    http_port = _free_port(spec.dashboard.port if port is None else port)
    url = f"http://127.0.0.1:{http_port}/"
    dask_port = 0
    while jobs and dask_port in (0, http_port):
        # Dask's dashboard on the host, the spec's port when free (not yet bound: not the same)
        dask_port = _free_port(spec.jobs.dashboard_port if not dask_port else 0)
    record = {"spec": str(path), "uplink": str(plan.uplink_net), "url": url, "jobs": jobs}
    _state_file(state).write_text(json.dumps({**record, "dask_port": dask_port}))
    say(f"lab {name!r}: {len(plan.nodes)} nodes, state in {state}")
    _lab_tls(source, state, say)  # the nodes enroll over HTTPS, Dask runs with mutual TLS
    build.build_network(plan, spec, say)
    build.start_master(plan, spec, secrets, path, http_port, say, jobs=jobs, dask_port=dask_port)
    lab = Lab(
        plan=plan,
        spec=spec,
        spec_path=path,
        url=url,
        jobs=jobs,
        dask_port=dask_port,
        join_token=secrets.join_token,
    )
    build.build_nodes(plan, say)
    booted = build.boot_nodes(lab, [n.name for n in plan.nodes], say)
    ok, detail = nfs_check(lab, plan.nodes[0])
    say(f"NFS export read from {plan.nodes[0].name} with nfs-cat: {'ok' if ok else detail}")
    build.start_supervisor(plan)
    count = build.wait_nodes_up(lab, len(plan.nodes), timeout=30)
    say(f"{count}/{len(plan.nodes)} nodes up on the master's API")
    if jobs:
        build.start_workers(lab, booted, say)
    say(f"lab up in {time.monotonic() - started:.1f} s; dashboard: {url}")
    return lab


def _leftovers(prefix: str) -> bool:
    base = topology.ns_prefix(prefix)
    return (
        any(ns.startswith(base) for ns in netns.namespaces())
        or netns.link_exists(f"brl-{prefix}-up")
        or (topology.STATE_ROOT / prefix).exists()
    )


# --- checks and status -------------------------------------------------------------------


def nfs_check(lab: Lab, node: NodePlan) -> tuple[bool, str]:
    """Read the check file over real NFSv4 with nfs-cat from NODE's namespace."""
    spec = lab.spec
    url = f"nfs://{spec.network.master_address}{spec.shares[0].export}/{NFS_CHECK_FILE}?version=4"
    proc = subprocess.run(
        ["ip", "netns", "exec", node.netns, "nfs-cat", url],
        capture_output=True,
        text=True,
        timeout=15,
    )
    if proc.returncode == 0 and proc.stdout == NFS_CHECK_TEXT:
        return True, url
    return False, f"failed: {(proc.stderr or proc.stdout).strip()[:200]}"


def node_hostname(lab: Lab, name: str) -> str:
    """The hostname inside a running node's UTS namespace ('' if it is not running)."""
    holder = daemons.running(lab.plan.state / "run", f"{name}.init")
    if holder is None:
        return ""
    return netns.run(daemons.in_node(holder, ["hostname"]), check=False).strip()


def node_address(lab: Lab, name: str) -> str:
    """The node's IPv4 address on eth0 ('' if none)."""
    out = netns.ip(
        "-j", "-4", "addr", "show", "dev", "eth0", ns=lab.plan.node(name).netns, check=False
    )
    for link in json.loads(out or "[]"):
        for addr in link.get("addr_info", []):
            return str(addr["local"])
    return ""


def show_status(*, prefix: str | None = None, say: Say = _say) -> None:
    """Print the lab's namespaces, daemons, nodes and the NFS check."""
    lab = load_lab(prefix)
    plan, run = lab.plan, lab.plan.state / "run"
    say(f"lab {plan.prefix!r}: dashboard {lab.url}  state {plan.state}")
    present = set(netns.namespaces())
    say(f"uplink {plan.uplink_root} {plan.uplink_host} <-> master {plan.uplink_master}")
    for d in (*master_daemons(lab.jobs), "supervisor"):
        pid = daemons.running(run, d)
        say(f"  master {d:<10} {'running pid ' + str(pid) if pid else 'NOT RUNNING'}")
    for node in plan.nodes:
        if node.netns not in present:
            say(f"  {node.name:<12} namespace missing")
            continue
        stopped = (plan.state / "nodes" / node.name / "stopped").exists()
        frozen = (plan.state / "nodes" / node.name / "frozen").exists()
        link = json.loads(
            netns.ip("-j", "link", "show", "dev", node.port, ns=plan.switch_ns, check=False)
            or "[{}]"
        )[0]
        cable = "cut" if "UP" not in link.get("flags", []) else "plugged"
        agent = daemons.running(run, f"{node.name}.agent")
        state = "off" if stopped else ("agent pid " + str(agent) if agent else "agent NOT RUNNING")
        if frozen:
            state = "FROZEN, " + state
        if lab.jobs and not stopped:
            worker = daemons.running(run, f"{node.name}.worker")
            state += f", worker pid {worker}" if worker else ", worker NOT RUNNING"
        nfs = "-"
        if not stopped and not frozen and cable == "plugged":
            ok, detail = nfs_check(lab, node)
            nfs = "ok" if ok else detail
        say(
            f"  {node.name:<12} {node.mac} {node_address(lab, node.name) or '-':<15} "
            f"host {node_hostname(lab, node.name) or '-':<12} cable {cable:<7} {state}  "
            f"nfs-cat {nfs}"
        )
    say(
        "shares: NFSv4 export served by nfs-ganesha, checked with nfs-cat from each node; "
        "nodes see it through a bind mount (this kernel has no NFS client)"
    )


# --- faults, exec -------------------------------------------------------------------------


def fault(node: str, verb: str, *, prefix: str | None = None, say: Say = _say) -> None:
    """stop/start (power), cut/heal (cable) or freeze/thaw (a hang) NODE; the master's name
    stops/starts its daemons."""
    lab = load_lab(prefix)
    with daemons.locked(lab.plan.state / "run"):
        _fault(lab, node, verb, say)


def _fault(lab: Lab, node: str, verb: str, say: Say) -> None:
    plan, run = lab.plan, lab.plan.state / "run"
    if node == lab.spec.master.name:
        if verb == "stop":
            daemons.stop(run, ["master", "dnsmasq", "ganesha", *build.JOB_DAEMONS])
        elif verb == "start":
            port = int(lab.url.rsplit(":", 1)[1].strip("/"))
            todo = [d for d in master_daemons(lab.jobs) if daemons.running(run, d) is None]
            build.start_master_daemons(plan, lab.spec, lab.spec_path, port, todo, lab.dask_port)
        else:
            raise BrambleError(f"the master supports stop and start, not {verb}")
        say(f"{node}: {verb}")
        return
    target = plan.node(node)
    if verb == "cut":
        netns.ip("link", "set", target.port, "down", ns=plan.switch_ns)
    elif verb == "heal":
        netns.ip("link", "set", target.port, "up", ns=plan.switch_ns)
    elif verb == "stop":
        # Power off: the Dask worker dies at once (no chance to hand its work over), while
        # the link is still up, so the scheduler sees its connections close.
        daemons.stop(run, [f"{node}.worker"], timeout=0)
        daemons.stop(run, [f"{node}.agent", f"{node}.udhcpc"])
        netns.ip("link", "set", "eth0", "down", ns=target.netns)
        netns.ip("-4", "addr", "flush", "dev", "eth0", ns=target.netns, check=False)
        holder = daemons.running(run, f"{node}.init")
        if holder:
            netns.run(daemons.in_node(holder, ["hostname", "localhost"]), check=False)
        (plan.state / "nodes" / node / "stopped").write_text("")
    elif verb in ("freeze", "thaw"):
        # A board that hangs: every process of the node stops where it is (SIGSTOP), its
        # connections stay open and nothing is said on the wire; thaw lets them go on.
        pids = netns.ns_pids(target.netns)
        sig = signal.SIGSTOP if verb == "freeze" else signal.SIGCONT
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        marker = plan.state / "nodes" / node / "frozen"
        if verb == "freeze":
            marker.write_text("")
        else:
            marker.unlink(missing_ok=True)
        say(f"{node}: {verb} ({len(pids)} processes)")
        return
    elif verb == "start":
        if daemons.running(run, f"{node}.agent"):
            say(f"{node} is already on")
            return
        if build.boot_nodes(lab, [node], say) and lab.jobs:
            build.start_workers(lab, [node], say)
    else:
        raise BrambleError(f"unknown fault {verb!r}: stop, start, cut, heal, freeze or thaw")
    say(f"{node}: {verb}")


def throttle(
    node: str,
    *,
    undervoltage: bool = False,
    clear: bool = False,
    prefix: str | None = None,
    say: Say = _say,
) -> int:
    """Set lab NODE's firmware flags as a hot board's (a weak supply's with UNDERVOLTAGE), or
    with CLEAR end them; the flags. Its agent reports them at its next interval."""
    from bramble.lab import board

    lab = load_lab(prefix)
    if node == lab.spec.master.name:
        raise BrambleError("the master has no lab firmware: name a node")
    lab.plan.node(node)  # BrambleError for a node the lab does not have
    value = board.throttle(lab.plan.state / "nodes" / node, undervoltage=undervoltage,
                           clear=clear)  # fmt: skip
    say(f"{node}: get_throttled = {board.describe(value)}")
    return value


def exec_in(node: str, argv: list[str], *, prefix: str | None = None) -> int:
    """Run ARGV inside NODE (its network, hostname and mounts) or the master; its exit code.

    $BRAMBLE_SPEC names the lab's spec there, so `bramble run`, `exec`, `hosts` and
    `mpirun` find the lab's cluster.
    """
    lab = load_lab(prefix)
    if argv and argv[0] == "--":
        argv = argv[1:]
    env = {**os.environ, "BRAMBLE_SPEC": str(lab.spec_path)}
    if node in ("master", lab.spec.master.name):
        shares = topology.lab_shares(lab.spec, lab.plan.state)
        command = daemons.in_netns(lab.plan.master_ns, topology.with_shares(shares, argv or ["sh"]))
        return subprocess.call(command, env=env)
    holder = daemons.running(lab.plan.state / "run", f"{node}.init")
    if holder is None:
        lab.plan.node(node)
        raise BrambleError(f"{node} is not running")
    return subprocess.call(daemons.in_node(holder, argv or ["sh"]), env=env)


# --- down ---------------------------------------------------------------------------------


def down(*, prefix: str | None = None, say: Say = _say) -> list[str]:
    """Remove every namespace, link, mount and process of the lab; what is left (empty = clean)."""
    name = prefix_of(prefix)
    base = topology.ns_prefix(name)
    state = topology.STATE_ROOT / name
    # The supervisor first, so nothing is restarted while the lab comes down.
    pid = daemons.read_pid(state / "run", "supervisor")
    if pid is not None and netns.alive(pid) and str(state).encode() in _cmdline(pid):
        netns.kill_pids([pid])
    mine = [ns for ns in netns.namespaces() if ns.startswith(base)]
    master = [ns for ns in mine if ns == base + "master"]
    # The master first, so it records the nodes going away no more than it must.
    for ns in master + [ns for ns in mine if ns not in master]:
        netns.delete_namespace(ns)
    say(f"removed {len(mine)} namespace(s)")
    netns.kill_pids(_state_pids(state))
    uplink = f"brl-{name}-up"
    if netns.link_exists(uplink):
        netns.ip("link", "delete", uplink, check=False)
        say(f"removed link {uplink}")
    shutil.rmtree(state, ignore_errors=True)
    left = leftovers(name)
    say("lab down: nothing left" if not left else "lab down, but left: " + "; ".join(left))
    return left


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _state_pids(state: Path) -> list[int]:
    """The lab's own processes whose command line names its state directory (e.g. mid-start).

    Only programs the lab runs count, so a `tail -f` of a lab log is left alone.
    """
    key = str(state).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        program = os.path.basename(cmdline.split(b"\0", 1)[0]).decode(errors="replace")
        ours = program in LAB_PROGRAMS or (program.startswith("python") and b"bramble" in cmdline)
        if key in cmdline and ours:
            pids.append(int(entry.name))
    return pids


def leftovers(prefix: str) -> list[str]:
    """Anything of the lab PREFIX still present: namespaces, links, mounts, processes, state."""
    base = topology.ns_prefix(prefix)
    state = topology.STATE_ROOT / prefix
    left = [f"namespace {ns}" for ns in netns.namespaces() if ns.startswith(base)]
    if netns.link_exists(f"brl-{prefix}-up"):
        left.append(f"link brl-{prefix}-up")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if f"/run/netns/{base}" in fields[4] or str(state) in fields[4]:
                left.append(f"mount {fields[4]}")
    left += [f"process {pid}" for pid in _state_pids(state) if netns.alive(pid)]
    if state.exists():
        left.append(f"state {state}")
    return left


# --- demo -------------------------------------------------------------------------------------


def demo(*, nodes: int, port: int, jobs: bool = True) -> None:
    """`bramble demo` as root: a lab of NODES nodes until Ctrl-C, then `lab down`."""
    prefix = "demo"
    lab = up(None, nodes=nodes, prefix=prefix, port=port, jobs=jobs)
    _say(f"bramble demo: lab cluster of {nodes} nodes; dashboard {lab.url} (Ctrl-C stops)")
    if lab.jobs:
        share = topology.export_dir(lab.plan.state, lab.spec.shares[0].export)
        _say(
            f"jobs: put a job file in {share} (the master's {lab.spec.shares[0].export}), then "
            f"`sudo bramble lab exec master --prefix {prefix} -- bramble run --follow "
            f"{lab.spec.shares[0].mount}/FILE`"
        )
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda s, f: stopping.append(s))
    try:
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        down(prefix=prefix)
