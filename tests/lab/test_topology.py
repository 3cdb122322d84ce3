"""The lab's pure plan: names, addresses and generated configs (no root needed)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from bramble.errors import BrambleError, MissingToolError
from bramble.lab import netns, topology
from bramble.provision.render import render
from bramble.spec import Secrets


def test_builtin_spec_is_a_normal_spec_with_fixed_addresses() -> None:
    spec = topology.builtin_spec(4)
    assert [n.name for n in spec.nodes] == ["node-1", "node-2", "node-3", "node-4"]
    assert spec.nodes[0].mac == "02:b7:00:00:00:01"
    assert [str(n.address) for n in spec.nodes] == [f"10.42.0.{10 + i}" for i in range(1, 5)]
    assert all(n.address in spec.network.subnet for n in spec.nodes)
    assert all(n.address < spec.network.dhcp_start for n in spec.nodes)  # type: ignore[operator]


@pytest.mark.parametrize("nodes", [0, topology.MAX_BUILTIN_NODES + 1])
def test_builtin_spec_bounds(nodes: int) -> None:
    with pytest.raises(BrambleError, match="--nodes"):
        topology.builtin_spec(nodes)


@pytest.mark.parametrize("prefix", ["", "UPPER", "toolongname", "a-b", "x y"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(BrambleError, match="prefix"):
        topology.check_prefix(prefix)


def test_names_carry_the_prefix_and_fit_link_limits() -> None:
    spec = topology.builtin_spec(32)
    plan = topology.plan(spec, "abcdefgh", set())
    assert len(plan.uplink_root) <= 15
    assert all(ns.startswith("brl-abcdefgh-") for ns in plan.namespaces())
    assert len(set(plan.namespaces())) == 34
    assert all(len(n.port) <= 15 for n in plan.nodes)
    assert plan.state == Path("/run/bramble-lab/abcdefgh")
    other = topology.plan(spec, "abcdefg", set())
    assert not set(plan.namespaces()) & set(other.namespaces())


def test_uplink_is_a_private_30_that_avoids_used_networks() -> None:
    first = topology.uplink_net("lab", set())
    assert first.prefixlen == 30 and first.subnet_of(topology.UPLINK_POOL)
    assert topology.uplink_net("lab", set()) == first  # stable per prefix
    second = topology.uplink_net("lab", {first})
    assert second != first and not second.overlaps(first)
    plan = topology.plan(topology.builtin_spec(1), "lab", {IPv4Network("10.0.0.0/8")})
    assert plan.uplink_host == first.network_address + 1
    assert plan.uplink_master == first.network_address + 2


def test_rendered_dnsmasq_changes_only_the_lease_path_and_the_ping_check() -> None:
    """The lab moves the lease file and turns off the ping check of pool addresses (every
    host on its switch is its own); nothing else differs from the real master's config."""
    spec = topology.builtin_spec(2)
    secrets = Secrets("k1", b"k" * 32, "token")
    files = render(spec, secrets)
    text = files["master/etc/dnsmasq.d/bramble.conf"]
    assert "no-ping" not in text  # a real cluster keeps the check
    adapted = topology.adapt_dnsmasq(text, Path("/run/bramble-lab/x"))
    assert "dhcp-leasefile=/run/bramble-lab/x/master/dnsmasq.leases" in adapted
    lines = adapted.splitlines()
    assert lines[-1] == "no-ping" and lines[-2].startswith("#") and lines[-3] == ""
    changed = [(a, b) for a, b in zip(text.splitlines(), lines[:-3], strict=True) if a != b]
    assert len(changed) == 1
    assert "dhcp-host=02:b7:00:00:00:02,node-2,10.42.0.12" in adapted


def test_ganesha_config_is_nfs4_only_with_pseudo_equal_to_export() -> None:
    spec = topology.builtin_spec(1)
    conf = topology.ganesha_conf(spec, Path("/run/bramble-lab/x"))
    assert "Protocols = 4; Enable_RQUOTA = false; Enable_NLM = false;" in conf
    assert "Active_krb5 = false" in conf
    assert 'Pseudo = "/srv/jobs";' in conf
    assert 'Path = "/run/bramble-lab/x/master/export/srv/jobs";' in conf
    assert "Name = VFS;" in conf


def test_udhcpc_script_sets_hostname_and_writes_the_lease_last() -> None:
    script = topology.udhcpc_script(Path("/s/n"))
    bound = script.split("bound|renew)")[1]
    assert 'hostname "$hostname"' in bound
    assert bound.index("resolv.conf") < bound.index("/s/n/lease")


def test_lab_spec_moves_only_the_history_and_the_wheels() -> None:
    spec = topology.builtin_spec(2)
    moved = topology.lab_spec(spec, Path("/run/bramble-lab/x"))
    assert moved.history.path == "/run/bramble-lab/x/master/history.db"
    assert moved.software.wheels_dir == "/run/bramble-lab/x/master/wheels"
    assert moved.nodes == spec.nodes and moved.network == spec.network
    assert moved.network.master_address == IPv4Address("10.42.0.1")


def test_missing_tool_names_the_debian_package(tmp_path: Path) -> None:
    error = netns.missing_tool(str(tmp_path))
    assert isinstance(error, MissingToolError)
    assert error.tool == "ip" and error.package == "iproute2"
    (tmp_path / "ip").write_text("#!/bin/sh\n")
    (tmp_path / "ip").chmod(0o755)
    error = netns.missing_tool(str(tmp_path))
    assert error is not None and "dnsmasq-base" in str(error)


def test_every_missing_tool_is_named_at_once_with_one_install_line(tmp_path: Path) -> None:
    for tool in ("ip", "nft", "busybox"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(0o755)
    error = netns.missing_tool(str(tmp_path))
    assert error is not None
    assert [t for t, _ in error.missing] == ["dnsmasq", "ganesha.nfsd", "nfs-cat", "nsenter",
                                             "unshare"]  # fmt: skip
    assert str(error) == (
        "5 programs not found: dnsmasq (dnsmasq-base), ganesha.nfsd (nfs-ganesha + "
        "nfs-ganesha-vfs), nfs-cat (libnfs-utils), nsenter (util-linux), unshare (util-linux): "
        "install them with `apt install dnsmasq-base nfs-ganesha nfs-ganesha-vfs libnfs-utils "
        "util-linux`"
    )
    # the lab refuses to start with all of them named (the CLI prints it in one line)
    assert "\n" not in str(error)


def test_a_node_cannot_take_the_masters_or_switchs_name() -> None:
    spec = topology.builtin_spec(1)
    renamed = spec.model_copy(
        update={"nodes": [spec.nodes[0].model_copy(update={"name": "switch"})]}
    )
    with pytest.raises(BrambleError, match="switch"):
        topology.plan(renamed, "lab", set())
