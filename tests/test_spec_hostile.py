"""Specs that would render a broken or open config: every name that reaches a config file is
checked against what that file accepts, and each is refused with its key and line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bramble.errors import SpecError
from bramble.provision.render import render
from bramble.spec import parse_spec

NODE = '\n[[nodes]]\nname = "node-1"\nmac = "b8:27:eb:00:00:01"\n'

REFUSED = [
    # interface names go into nftables rules and systemd-networkd [Match] sections
    ("[network]\nuplink_interface = 'w\"accept#'", "network.uplink_interface"),
    ('[network]\nuplink_interface = "w\\nDHCP=no"', "network.uplink_interface"),
    ('[network]\ncluster_interface = "eth0;"', "network.cluster_interface"),
    ('[network]\ncluster_interface = "eth\\u0000"', "network.cluster_interface"),
    ('[network]\ncluster_interface = ".."', "network.cluster_interface"),
    ('[network]\ncluster_interface = "eth:0"', "network.cluster_interface"),
    ('[network]\ncluster_interface = "wlan0"\nuplink_interface = "wlan0"',
     "network.uplink_interface"),
    # the subnet is who may mount the shares read-write
    ('[network]\nsubnet = "0.0.0.0/0"\nmaster_address = "10.42.0.1"', "network.subnet"),
    ('[network]\nsubnet = "8.8.8.0/24"\nmaster_address = "8.8.8.1"\n'
     'dhcp_start = "8.8.8.100"\ndhcp_end = "8.8.8.199"', "network.subnet"),
    # shared directories: exports, tmpfiles, mount units
    ('[[shares]]\nexport = "/"\nmount = "/mnt/jobs"', "shares[0].export"),
    ('[[shares]]\nexport = "/etc"\nmount = "/mnt/jobs"', "shares[0].export"),
    ('[[shares]]\nexport = "/srv/jobs"\nmount = "/mnt/../etc"', "shares[0].mount"),
    ('[[shares]]\nexport = "/srv/../etc"\nmount = "/mnt/jobs"', "shares[0].export"),
    ('[[shares]]\nexport = "/srv/jobs"\nmount = "/"', "shares[0].mount"),
    ('[[shares]]\nexport = "/srv/jo\\"bs"\nmount = "/mnt/jobs"', "shares[0].export"),
    ("[[shares]]\nexport = \"/srv/jobs\"\nmount = \"/mnt/jo'bs\"", "shares[0].mount"),
    ('[[shares]]\nexport = "/srv/jobs\\nx"\nmount = "/mnt/jobs"', "shares[0].export"),
    ('[[shares]]\nexport = "/srv//jobs"\nmount = "/mnt/jobs"', "shares[0].export"),
    ('[jobs]\njobs_dir = "jobs"', "jobs.jobs_dir"),
    ('[jobs]\njobs_dir = "/mnt/jobs/../../etc"', "jobs.jobs_dir"),
    ('[history]\npath = "/var/lib/bramble/\\"h.db"', "history.path"),
    ('[history]\npath = "history.db"', "history.path"),
    ('[dashboard]\nbind = "0.0.0.0\\n"', "dashboard.bind"),
    ('[telemetry]\nunicast = ["10.42.0.1\\n:6000"]', "telemetry.unicast"),
    # numbers must be finite
    ("[telemetry]\ninterval = nan", "telemetry.interval"),
    ("[telemetry]\ninterval = inf", "telemetry.interval"),
    ("[telemetry]\nclock_window = inf", "telemetry.clock_window"),
    ("[telemetry]\nstale_after = nan", "telemetry.stale_after"),
    ("[telemetry]\ndown_after = inf", "telemetry.down_after"),
    ("[history]\nraw_hours = inf", "history.raw_hours"),
    ("[history]\nminute_days = nan", "history.minute_days"),
    ("[history]\nhour_days = inf", "history.hour_days"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "key"), [pytest.param(t, k, id=f"{k}-{i}") for i, (t, k) in enumerate(REFUSED)]
)
def test_the_spec_refuses(text: str, key: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(text + NODE, "test.toml")
    assert caught.value.key == key
    assert "\n" not in str(caught.value)


def test_paths_are_kept_as_written_when_normal() -> None:
    spec = parse_spec('[[shares]]\nexport = "/srv/jobs/"\nmount = "/mnt/jobs"' + NODE)
    assert spec.shares[0].export == "/srv/jobs"


def test_the_input_chain_drops_by_default() -> None:
    ruleset = render(parse_spec(NODE), None)["master/etc/nftables.d/bramble.nft"]
    chain = ruleset.split("chain input {", 1)[1].split("}", 1)[0]
    assert "policy drop;" in chain


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("a = " + "[" * 5000 + "]" * 5000, id="arrays"),
        pytest.param("a = " + "{b = " * 5000 + "1" + "}" * 5000, id="inline-tables"),
    ],
)
def test_deep_nesting_is_one_clear_line(text: str, tmp_path: Path) -> None:
    spec = tmp_path / "bramble.toml"
    spec.write_text(text + "\n")
    out = subprocess.run(
        [sys.executable, "-m", "bramble", "check", "--spec", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "nest" in line and "bramble.toml" in line
