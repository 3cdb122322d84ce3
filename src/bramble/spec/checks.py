"""What is wrong with a spec: pydantic's errors as key paths with fixes, and the checks that
relate several keys (addresses inside the subnet, duplicate names and MACs, the DHCP range).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address

from pydantic import ValidationError

from bramble.spec.locate import key_path, model_at
from bramble.spec.models import BUILTIN_ALERTS, Spec
from bramble.telemetry.metrics import BY_NAME, CONDITIONS


@dataclass(frozen=True, slots=True)
class Problem:
    key: str
    message: str
    fix: str | None = None


def pydantic_problems(error: ValidationError) -> Iterator[Problem]:
    for item in error.errors():
        loc = tuple(item["loc"])
        key = key_path(loc)
        if item["type"] == "extra_forbidden":
            parent = model_at(loc[:-1])
            allowed = sorted(f.alias or n for n, f in parent.model_fields.items()) if parent else []
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            fix = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
            yield Problem(key, "unknown key", fix)
        elif item["type"] == "missing":
            yield Problem(key, "is required", f"add '{loc[-1]} = ...'")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            # one line, whatever the value quoted in it holds
            message = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
            yield Problem(key, message)


def semantic_problems(spec: Spec) -> Iterator[Problem]:
    net = spec.network
    subnet = net.subnet
    # The subnet is who may mount the shares read-write (and who the firewall trusts).
    if subnet.prefixlen < 8 or not subnet.is_private:
        yield Problem(
            "network.subnet",
            f"{subnet} is not a private network of at most 16 million addresses: the shares "
            "are exported read-write to the whole subnet",
            "use a private subnet such as 10.42.0.0/24 or 192.168.42.0/24",
        )
    if net.cluster_interface == net.uplink_interface:
        yield Problem(
            "network.uplink_interface",
            f"the uplink is the cluster interface ({net.cluster_interface})",
            "the master needs two interfaces: the cluster switch and the way out",
        )
    if net.master_address not in subnet:
        yield Problem(
            "network.master_address",
            f"{net.master_address} is outside the subnet {subnet}",
            "pick an address inside network.subnet",
        )
    elif net.master_address in (subnet.network_address, subnet.broadcast_address):
        yield Problem(
            "network.master_address",
            f"{net.master_address} is the subnet's network or broadcast address",
            "pick a host address",
        )
    for key, address in (
        ("network.dhcp_start", net.dhcp_start),
        ("network.dhcp_end", net.dhcp_end),
    ):
        if address not in subnet:
            yield Problem(
                key,
                f"{address} is outside the subnet {subnet}",
                "keep the range inside network.subnet",
            )
    if net.dhcp_start > net.dhcp_end:
        yield Problem(
            "network.dhcp_start",
            f"the DHCP range {net.dhcp_start}-{net.dhcp_end} is reversed",
            "swap dhcp_start and dhcp_end",
        )
    in_range = net.dhcp_start <= net.master_address <= net.dhcp_end
    if in_range:
        yield Problem(
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
            yield Problem(
                f"{here}.name",
                f"duplicate name '{node.name}' (also {names[node.name]})",
                "give every board its own name",
            )
        names.setdefault(node.name, f"{here}.name")
        if node.mac in macs:
            yield Problem(
                f"{here}.mac",
                f"duplicate MAC {node.mac} (also {macs[node.mac]})",
                "every board has its own MAC: check the label or `ip link` on the board",
            )
        macs.setdefault(node.mac, f"{here}.mac")
        if node.address is None:
            continue
        if node.address not in subnet:
            yield Problem(
                f"{here}.address",
                f"{node.address} is outside the subnet {subnet}",
                "pick an address inside network.subnet, or leave it out for a dynamic lease",
            )
        elif node.address in (subnet.network_address, subnet.broadcast_address):
            yield Problem(
                f"{here}.address",
                f"{node.address} is the subnet's network or broadcast address",
                "pick a host address",
            )
        if node.address in addresses:
            yield Problem(
                f"{here}.address",
                f"duplicate address {node.address} (also {addresses[node.address]})",
                "give every board its own address",
            )
        addresses.setdefault(node.address, f"{here}.address")
        if net.dhcp_start <= node.address <= net.dhcp_end:
            yield Problem(
                f"{here}.address",
                f"{node.address} is inside the DHCP range {net.dhcp_start}-{net.dhcp_end}",
                "pick a fixed address outside the range, or move the range",
            )

    tel = spec.telemetry
    if tel.stale_after >= tel.down_after:
        yield Problem(
            "telemetry.stale_after",
            f"stale_after ({tel.stale_after}) must be less than down_after ({tel.down_after})",
            "a node goes stale before it goes down",
        )

    mounts: set[str] = set()
    for index, share in enumerate(spec.shares):
        if share.mount in mounts:
            yield Problem(
                f"shares[{index}].mount",
                f"duplicate mount point {share.mount}",
                "mount each share at its own place",
            )
        mounts.add(share.mount)

    yield from alert_problems(spec)


def alert_problems(spec: Spec) -> Iterator[Problem]:
    """Rules naming a metric that does not exist, missing what they need, or named twice."""
    builtin = {rule.name for rule in BUILTIN_ALERTS}
    known = sorted({*BY_NAME, *CONDITIONS})
    seen: dict[str, str] = {}
    for index, rule in enumerate(spec.alerts):
        here = f"alerts[{index}]"
        if rule.name in seen:
            yield Problem(
                f"{here}.name",
                f"duplicate rule '{rule.name}' (also {seen[rule.name]})",
                "give every rule its own name",
            )
        seen.setdefault(rule.name, f"{here}.name")
        if rule.metric is not None and rule.metric not in known:
            close = difflib.get_close_matches(rule.metric, known, n=1)
            yield Problem(
                f"{here}.metric",
                f"unknown metric '{rule.metric}'",
                f"did you mean '{close[0]}'?" if close else f"use one of {', '.join(known)}",
            )
        if rule.name not in builtin:
            for key in ("metric", "threshold"):
                if getattr(rule, key) is None:
                    yield Problem(
                        f"{here}.{key}",
                        f"is required (rule '{rule.name}' is not a built-in one)",
                        f"add '{key} = ...', or name a built-in rule to change it: "
                        f"{', '.join(sorted(builtin))}",
                    )
