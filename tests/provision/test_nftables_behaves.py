"""The rendered nftables ruleset does its job in namespaces: cluster traffic is NATed out of
the uplink, nothing comes in from the uplink, and cluster services are reachable only from the
cluster side."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from bramble_testing import SECRETS, SPECS, finish

from bramble.provision.render import render
from bramble.spec import Spec, load_spec

pytestmark = [pytest.mark.root, pytest.mark.slow]

UPLINK_NET = "198.51.100"  # TEST-NET-2, only ever inside these namespaces

UDP_ECHO_SOURCE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(10)
data, (host, port) = s.recvfrom(100)
print(host, flush=True)
"""

TCP_LISTEN = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
print("ready", flush=True)
time.sleep(30)
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
    print("open")
except OSError:
    print("closed")
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True)


def _run(ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=20
    )


def _link(a_ns: str, a_name: str, b_ns: str, b_name: str) -> None:
    tag = f"{random.randrange(16**6):06x}"
    a, b = f"brna{tag}", f"brnb{tag}"
    _ip("link", "add", a, "type", "veth", "peer", "name", b)
    _ip("link", "set", a, "netns", a_ns)
    _ip("link", "set", b, "netns", b_ns)
    _ip("-n", a_ns, "link", "set", a, "name", a_name)
    _ip("-n", b_ns, "link", "set", b, "name", b_name)
    _ip("-n", a_ns, "link", "set", a_name, "up")
    _ip("-n", b_ns, "link", "set", b_name, "up")


@pytest.fixture
def gateway(netns: Callable[[], str], tmp_path: Path) -> Iterator[tuple[Spec, str, str, str, str]]:
    """client ns -- eth0 [master ns with the ruleset] wlan0 -- upstream ns."""
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (Debian package nftables)")
    spec = load_spec(SPECS / "small.toml")
    net = spec.network
    client, master, upstream = netns(), netns(), netns()
    _link(master, net.cluster_interface, client, "eth0")
    _link(master, net.uplink_interface, upstream, "eth0")
    client_ip = str(spec.nodes[0].address)
    prefix = net.subnet.prefixlen
    _ip("-n", master, "addr", "add", f"{net.master_address}/{prefix}", "dev", net.cluster_interface)
    _ip("-n", master, "addr", "add", f"{UPLINK_NET}.1/24", "dev", net.uplink_interface)
    _ip("-n", client, "addr", "add", f"{client_ip}/{prefix}", "dev", "eth0")
    _ip("-n", client, "route", "add", "default", "via", str(net.master_address))
    _ip("-n", upstream, "addr", "add", f"{UPLINK_NET}.2/24", "dev", "eth0")
    # the upstream side knows a way back into the cluster: only the firewall stops it
    _ip("-n", upstream, "route", "add", str(net.subnet), "via", f"{UPLINK_NET}.1")
    files = render(spec, SECRETS)
    sysctl = files["master/etc/sysctl.d/90-bramble.conf"]
    assert "net.ipv4.ip_forward = 1" in sysctl
    subprocess.run(
        ["ip", "netns", "exec", master, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], check=True
    )
    ruleset = tmp_path / "bramble.nft"
    ruleset.write_text(files["master/etc/nftables.d/bramble.nft"])
    subprocess.run(["ip", "netns", "exec", master, "nft", "-f", str(ruleset)], check=True)
    yield spec, client, master, upstream, client_ip


def test_cluster_reaches_uplink_through_nat(gateway: tuple[Spec, str, str, str, str]) -> None:
    _spec, client, _master, upstream, client_ip = gateway
    port = str(random.randrange(20000, 60000))
    listener = subprocess.Popen(
        ["ip", "netns", "exec", upstream, sys.executable, "-c", UDP_ECHO_SOURCE, port],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.3)
        send = (
            "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.sendto(b'hi', (sys.argv[1], int(sys.argv[2])))"
        )
        _run(client, sys.executable, "-c", send, f"{UPLINK_NET}.2", port)
        out, _ = listener.communicate(timeout=15)
    finally:
        finish(listener)
    # the upstream network sees the master's uplink address, never the node's
    assert out.strip() == f"{UPLINK_NET}.1"
    assert out.strip() != client_ip


def test_nothing_comes_in_from_the_uplink(gateway: tuple[Spec, str, str, str, str]) -> None:
    spec, client, master, upstream, client_ip = gateway
    port = str(spec.dashboard.port)
    server = subprocess.Popen(
        ["ip", "netns", "exec", master, sys.executable, "-c", TCP_LISTEN, port],
        stdout=subprocess.PIPE,
        text=True,
    )
    node_port = str(random.randrange(20000, 60000))
    node_server = subprocess.Popen(
        ["ip", "netns", "exec", client, sys.executable, "-c", TCP_LISTEN, node_port],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and node_server.stdout is not None
        assert server.stdout.readline().strip() == "ready"
        assert node_server.stdout.readline().strip() == "ready"
        master_ip = str(spec.network.master_address)
        # the dashboard port is open from the cluster side ...
        assert _run(client, sys.executable, "-c", CONNECT, master_ip, port).stdout.strip() == "open"
        # ... and closed from the uplink, as is forwarding into the cluster
        uplink = f"{UPLINK_NET}.1"
        assert (
            _run(upstream, sys.executable, "-c", CONNECT, uplink, port).stdout.strip() == "closed"
        )
        assert (
            _run(upstream, sys.executable, "-c", CONNECT, client_ip, node_port).stdout.strip()
            == "closed"
        )
        # a cluster-side port the master does not serve is dropped too
        assert (
            _run(client, sys.executable, "-c", CONNECT, master_ip, "9").stdout.strip() == "closed"
        )
        # without the table the same connections go through: the ruleset is what stops them
        subprocess.run(
            ["ip", "netns", "exec", master, "nft", "delete", "table", "inet", "bramble"], check=True
        )
        assert _run(upstream, sys.executable, "-c", CONNECT, uplink, port).stdout.strip() == "open"
        assert (
            _run(upstream, sys.executable, "-c", CONNECT, client_ip, node_port).stdout.strip()
            == "open"
        )
    finally:
        finish(server)
        finish(node_server)


OTHER_NET = "192.0.2"  # TEST-NET-1: a third interface, neither cluster nor uplink


def test_an_interface_the_spec_does_not_name_is_dropped(
    gateway: tuple[Spec, str, str, str, str], netns: Callable[[], str]
) -> None:
    spec, client, master, _upstream, _client_ip = gateway
    other = netns()
    _link(master, "eth9", other, "eth0")
    _ip("-n", master, "addr", "add", f"{OTHER_NET}.1/24", "dev", "eth9")
    _ip("-n", other, "addr", "add", f"{OTHER_NET}.2/24", "dev", "eth0")
    port = str(spec.dashboard.port)
    server = subprocess.Popen(
        ["ip", "netns", "exec", master, sys.executable, "-c", TCP_LISTEN, port],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        master_ip = str(spec.network.master_address)
        # still open from the cluster side ...
        assert _run(client, sys.executable, "-c", CONNECT, master_ip, port).stdout.strip() == "open"
        # ... and closed from an interface nobody named
        reply = _run(other, sys.executable, "-c", CONNECT, f"{OTHER_NET}.1", port)
        assert reply.stdout.strip() == "closed"
        # loopback on the master itself keeps working
        local = _run(master, sys.executable, "-c", CONNECT, "127.0.0.1", port)
        assert local.stdout.strip() == "open"
    finally:
        finish(server)
