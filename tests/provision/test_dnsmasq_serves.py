"""The rendered dnsmasq really serves: a DHCP client with a spec MAC gets its address and
name, and DNS answers node names (network namespaces, the real dnsmasq and busybox udhcpc)."""

from __future__ import annotations

import ipaddress
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bramble_testing import SECRETS, SPECS

from bramble.provision.render import render
from bramble.spec import Spec, load_spec

pytestmark = [pytest.mark.root, pytest.mark.slow]

UDHCPC_SCRIPT = """#!/bin/sh
# udhcpc calls this with $1 = deconfig|bound|renew|nak and the lease in the environment
case "$1" in
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    echo "ip=$ip hostname=$hostname domain=$domain router=$router dns=$dns" >> "$LEASE_OUT"
    ;;
esac
exit 0
"""

DNS_QUERY = """
import random, socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
qid = random.randrange(65536)
q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0"
q += struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, (server, 53))
data = s.recv(512)
rid, flags, qd, an = struct.unpack(">HHHH", data[:8])
assert rid == qid
rcode = flags & 0xF
print("rcode", rcode)
if an:
    print("A", socket.inet_ntoa(data[-4:]))
"""


def _ns(ns: str, *cmd: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], text=True, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture
def served(netns: Callable[[], str], tmp_path: Path) -> Iterator[tuple[Spec, str, str]]:
    """The small spec's rendered dnsmasq running in a master namespace, wired to a client one."""
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists() or shutil.which("busybox") is None:
        pytest.skip("needs dnsmasq (dnsmasq-base) and busybox")
    spec = load_spec(SPECS / "small.toml")
    master, client = netns(), netns()
    tag = f"{random.randrange(16**6):06x}"
    a, b = f"brpm{tag}", f"brpc{tag}"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        subprocess.run(["ip", "link", "set", a, "netns", master], check=True)
        subprocess.run(["ip", "link", "set", b, "netns", client], check=True)
    except subprocess.CalledProcessError:
        subprocess.run(["ip", "link", "del", a], check=False)
        raise
    iface = spec.network.cluster_interface
    # inside its namespace the link can carry the spec's own interface name: no config edits
    subprocess.run(["ip", "-n", master, "link", "set", a, "name", iface], check=True)
    subprocess.run(["ip", "-n", client, "link", "set", b, "name", "eth0"], check=True)
    prefix = spec.network.subnet.prefixlen
    subprocess.run(
        [
            "ip",
            "-n",
            master,
            "addr",
            "add",
            f"{spec.network.master_address}/{prefix}",
            "dev",
            iface,
        ],
        check=True,
    )
    subprocess.run(["ip", "-n", master, "link", "set", iface, "up"], check=True)
    conf = render(spec, SECRETS)["master/etc/dnsmasq.d/bramble.conf"]
    conf = conf.replace("/var/lib/misc/dnsmasq.leases", str(tmp_path / "leases"))
    (tmp_path / "dnsmasq.conf").write_text(conf)
    proc = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            master,
            dnsmasq,
            "-k",
            "-C",
            str(tmp_path / "dnsmasq.conf"),
            "--user=root",
            "--no-hosts",
            f"--pid-file={tmp_path / 'pid'}",
            "--log-facility=-",
            "--log-dhcp",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 5
        while _ns(master, "ss", "-lun").stdout.count(":53 ") == 0:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else "dnsmasq exited"
            assert time.monotonic() < deadline, "dnsmasq did not start listening"
            time.sleep(0.05)
        yield spec, master, client
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            sys.stderr.write(proc.stdout.read())


def _lease(client: str, mac: str, tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT)
    script.chmod(0o755)
    out = tmp_path / f"lease-{mac.replace(':', '')}"
    subprocess.run(["ip", "-n", client, "link", "set", "eth0", "down"], check=True)
    subprocess.run(["ip", "-n", client, "link", "set", "eth0", "address", mac], check=True)
    subprocess.run(["ip", "-n", client, "link", "set", "eth0", "up"], check=True)
    run = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            client,
            "env",
            f"LEASE_OUT={out}",
            "busybox",
            "udhcpc",
            "-i",
            "eth0",
            "-f",
            "-q",
            "-n",
            "-t",
            "5",
            "-T",
            "1",
            "-O",
            "hostname",
            "-O",
            "domain",
            "-s",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    line = out.read_text().strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in line.split(" "))


def _dns(ns: str, name: str, server: str) -> str | None:
    out = _ns(ns, sys.executable, "-c", DNS_QUERY, name, server, timeout=10)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines())
    return lines.get("A")


def test_static_lease_hostname_and_dns(served: tuple[Spec, str, str], tmp_path: Path) -> None:
    spec, master, client = served
    node = spec.nodes[0]
    assert node.address is not None
    lease = _lease(client, node.mac, tmp_path)
    assert lease["ip"] == str(node.address)
    assert lease["hostname"] == node.name
    assert lease["domain"] == spec.network.domain
    assert lease["router"] == str(spec.network.master_address)
    assert lease["dns"] == str(spec.network.master_address)
    server = str(spec.network.master_address)
    assert _dns(client, spec.fqdn(node.name), server) == str(node.address)
    assert _dns(client, spec.fqdn(spec.master.name), server) == server
    # the master recorded the lease where the rendered dhcp-leasefile line points
    leases = (tmp_path / "leases").read_text()
    assert f"{node.mac} {node.address} {node.name}" in leases
    assert master.startswith("brprov-")


def test_dynamic_node_gets_pool_address_and_its_name_resolves(
    served: tuple[Spec, str, str], tmp_path: Path
) -> None:
    spec, _master, client = served
    node = next(n for n in spec.nodes if n.address is None)
    lease = _lease(client, node.mac, tmp_path)
    address = ipaddress.IPv4Address(lease["ip"])
    assert spec.network.dhcp_start <= address <= spec.network.dhcp_end
    assert lease["hostname"] == node.name
    assert _dns(client, spec.fqdn(node.name), str(spec.network.master_address)) == str(address)


def test_unknown_mac_gets_a_pool_address_but_no_node_name(
    served: tuple[Spec, str, str], tmp_path: Path
) -> None:
    spec, _master, client = served
    lease = _lease(client, "02:00:00:aa:bb:cc", tmp_path)
    address = ipaddress.IPv4Address(lease["ip"])
    assert spec.network.dhcp_start <= address <= spec.network.dhcp_end
    assert lease.get("hostname", "") not in {n.name for n in spec.nodes}
