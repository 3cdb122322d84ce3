"""Rendering: golden trees, identical node files, and every file checked by its own tool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from bramble_testing import EXAMPLES, GOLDEN, SECRETS, SPECS

from bramble.cluster import load_cluster
from bramble.provision.nodes import with_node
from bramble.provision.render import (
    BRAMBLE,
    USER_DATA,
    private,
    render,
    render_to_dir,
    unit_name,
)
from bramble.spec import Spec, parse_spec


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text("utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _golden_cases() -> list[tuple[str, Path]]:
    """Our own specs (golden/NAME) and the example specs (golden/example-NAME)."""
    cases = [(p.stem, p) for p in sorted(SPECS.glob("*.toml"))]
    cases += [(f"example-{p.stem}", p) for p in sorted(EXAMPLES.glob("*.toml"))]
    return cases


@pytest.mark.parametrize(("name", "path"), _golden_cases(), ids=[c[0] for c in _golden_cases()])
def test_golden_tree(name: str, path: Path) -> None:
    """The rendered tree is exactly the reviewed one (UPDATE_GOLDEN=1 rewrites it)."""
    from bramble.spec import load_spec

    rendered = render(load_spec(path), SECRETS)
    golden = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        shutil.rmtree(golden, ignore_errors=True)
        for rel, text in rendered.items():
            (golden / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden / rel).write_text(text, encoding="utf-8")
    assert golden.is_dir(), (
        f"no golden tree for {path.name}: run UPDATE_GOLDEN=1 python -m pytest "
        "tests/provision/test_render.py -k golden, review and commit tests/provision/golden/"
    )
    expected = _tree(golden)
    assert sorted(rendered) == sorted(expected)
    for rel, text in rendered.items():
        assert text == expected[rel], f"{rel} differs from the golden file"


def test_render_is_pure_and_deterministic(spec: Spec) -> None:
    assert render(spec, SECRETS) == render(spec, SECRETS)


def _node_tree(files: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in files.items() if k.startswith("node/")}


def test_node_files_name_no_node(spec: Spec) -> None:
    """Every node file is the same for every board: no node name, MAC or address anywhere."""
    files = render(spec, SECRETS)
    needles = [n.name for n in spec.nodes] + [n.mac for n in spec.nodes]
    needles += [str(n.address) for n in spec.nodes if n.address]
    assert needles
    checked = 0
    for rel, text in _node_tree(files).items():
        for needle in needles:
            assert not re.search(rf"(?<![\w-]){re.escape(needle)}(?![\w-])", text), (
                f"{rel} names {needle}"
            )
        checked += 1
    assert checked >= 7


def test_node_tree_is_the_same_after_nodes_add(spec_dir: Path) -> None:
    """One image forever: adding a board changes the master's files, never a node's."""
    cluster = load_cluster(spec_dir / "bramble.toml")
    assert cluster.text is not None
    before = render(cluster.spec, SECRETS, spec_text=cluster.text)
    text, added = with_node(cluster.text, "node-99", "02:00:00:00:00:99", None, "bramble.toml")
    after = render(added, SECRETS, spec_text=text)
    assert _node_tree(before) == _node_tree(after)
    assert before["master/etc/dnsmasq.d/bramble.conf"] != after["master/etc/dnsmasq.d/bramble.conf"]


def test_node_image_holds_only_what_a_stranger_may_see(spec: Spec) -> None:
    """The master's address, the CA certificate and the join token: no admin token, no
    telemetry key, no private key, no node list."""
    tls = {n: f"PEM {n}\n" for n in ("ca.pem", "worker.pem", "worker-key.pem", "client.pem")}
    tls["worker-key.pem"] = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
    node = _node_tree(render(spec, SECRETS, tls))
    everything = "\n".join(node.values())
    assert SECRETS.admin_token not in everything
    assert SECRETS.telemetry_key.hex() not in everything
    assert "PRIVATE KEY" not in everything
    assert not any(k.endswith("secrets.toml") for k in node)
    assert [k for k in node if "/tls/" in k] == ["node/etc/bramble/tls/ca.pem"]
    join = tomllib.loads(node["node/etc/bramble/join.toml"])["join"]
    assert join == {
        "master": f"https://{spec.network.master_address}:{spec.enroll_port}",
        "token": SECRETS.join_token,
    }
    assert private("node/etc/bramble/join.toml")
    assert parse_spec(node["node/etc/bramble/bramble.toml"]).nodes == []


def test_embedded_spec_round_trips(spec: Spec) -> None:
    files = render(spec, SECRETS)
    assert parse_spec(files["master/etc/bramble/bramble.toml"]) == spec
    node = parse_spec(files["node/etc/bramble/bramble.toml"])
    assert node == spec.model_copy(update={"nodes": []})


def test_secrets_only_when_given(spec: Spec) -> None:
    with_secrets = render(spec, SECRETS)
    without = render(spec, None)
    key = "master/etc/bramble/bramble.secrets.toml"
    assert key in with_secrets
    assert SECRETS.telemetry_key.hex() in with_secrets[key]
    assert SECRETS.join_token in with_secrets[key]
    assert not any(k.endswith("secrets.toml") or k.endswith("join.toml") for k in without)
    assert SECRETS.admin_token not in without[USER_DATA]


def test_tls_files_go_to_the_role_that_needs_them(spec: Spec) -> None:
    tls = {
        n: f"PEM {n}\n"
        for n in (
            "ca.pem",
            "ca-key.pem",
            "scheduler.pem",
            "scheduler-key.pem",
            "worker.pem",
            "worker-key.pem",
            "client.pem",
            "client-key.pem",
        )
    }
    files = render(spec, SECRETS, tls)
    node_tls = sorted(k for k in files if k.startswith("node/etc/bramble/tls/"))
    master_tls = sorted(k for k in files if k.startswith("master/etc/bramble/tls/"))
    assert [k.rsplit("/", 1)[1] for k in node_tls] == ["ca.pem"]
    assert "master/etc/bramble/tls/scheduler-key.pem" in master_tls
    assert not any("ca-key" in k for k in files), "the CA key never leaves the spec directory"
    assert private("node/etc/bramble/tls/worker-key.pem")
    assert not private("node/etc/bramble/tls/worker.pem")


def test_user_data_writes_every_node_file(spec: Spec) -> None:
    files = render(spec, SECRETS)
    text = files[USER_DATA]
    assert text.startswith("#cloud-config\n")
    data = yaml.safe_load(text)
    written = {w["path"]: w for w in data["write_files"]}
    node = {"/" + k[len("node/") :]: v for k, v in files.items() if k.startswith("node/etc/")}
    assert set(written) == set(node)
    for path, text in node.items():
        assert written[path]["content"] == text
        assert written[path]["permissions"] == ("0600" if private(path) else "0644")
    units = [
        "bramble-install.service",
        "bramble-enroll.service",
        "bramble-agent.service",
        "bramble-worker.service",
        "bramble-rotate.timer",
    ]
    enabled = [c for c in data["runcmd"] if c[:2] == ["systemctl", "enable"]][-1]
    started = [c for c in data["runcmd"] if c[:3] == ["systemctl", "start", "--no-block"]][-1]
    assert enabled[2:7] == units and started[3:8] == units
    # bramble comes from the master, never from a package index, and needs no compiler
    assert not [c for c in data["runcmd"] if "pip" in " ".join(map(str, c))]
    assert "gcc" not in data["packages"] and "python3-venv" in data["packages"]


def test_node_installs_bramble_from_the_master(spec: Spec) -> None:
    files = render(spec, SECRETS)
    installer = files["node/etc/bramble/bramble-install"]
    compile(installer, "bramble-install", "exec")
    url = f"http://{spec.network.master_address}:{spec.dashboard.port}/dist/"
    assert f'URL = "{url}"' in installer and 'VENV = "/opt/bramble"' in installer
    assert (
        '"--no-index", "--find-links", url' in installer and '"--trusted-host", host' in installer
    )
    unit = _ini(files["node/etc/systemd/system/bramble-install.service"])
    assert unit["Service"]["ExecStart"] == "/usr/bin/python3 /etc/bramble/bramble-install --restart"
    assert unit["Service"]["Type"] == "oneshot"
    for name in ("enroll", "agent", "worker"):
        after = _ini(files[f"node/etc/systemd/system/bramble-{name}.service"])["Unit"]["After"]
        assert "bramble-install.service" in after.split()
    for name in ("agent", "worker"):
        after = _ini(files[f"node/etc/systemd/system/bramble-{name}.service"])["Unit"]["After"]
        assert "bramble-enroll.service" in after.split()
    master_agent = _ini(files["master/etc/systemd/system/bramble-agent.service"])
    assert "bramble-install" not in master_agent["Unit"]["After"]


def test_dnsmasq_content(spec: Spec) -> None:
    conf = render(spec, SECRETS)["master/etc/dnsmasq.d/bramble.conf"]
    net = spec.network
    lines = conf.splitlines()
    assert f"interface={net.cluster_interface}" in lines and "bind-interfaces" in lines
    assert f"local=/{net.domain}/" in lines and "dhcp-authoritative" in lines
    for node in spec.nodes:
        want = f"dhcp-host={node.mac},{node.name}" + (f",{node.address}" if node.address else "")
        assert want in lines
    for server in net.upstream_dns:
        assert f"server={server}" in lines
    for option in ("router", "dns-server", "ntp-server"):
        assert f"dhcp-option=option:{option},{net.master_address}" in lines


def _parse_exports(text: str) -> list[tuple[str, str, list[str]]]:
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        path, client = line.split(None, 1)
        match = re.fullmatch(r"([0-9./]+)\(([a-z_,]+)\)", client)
        assert match, f"bad exports client spec {client!r}"
        out.append((path, match.group(1), match.group(2).split(",")))
    return out


def test_exports_parse(spec: Spec) -> None:
    exports = _parse_exports(render(spec, SECRETS)["master/etc/exports.d/bramble.exports"])
    assert [e[0] for e in exports] == [s.export for s in spec.shares]
    for _, client, options in exports:
        assert client == str(spec.network.subnet)
        assert options == ["rw", "sync", "no_subtree_check", "root_squash"]


def _ini(text: str) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
            sections[current] = {}
        else:
            key, value = line.split("=", 1)
            sections[current][key] = value
    return sections


def test_mount_units_parse(spec: Spec) -> None:
    """Each share is a .mount + .automount pair that never hangs boot on the master."""
    files = render(spec, SECRETS)
    for share in spec.shares:
        mount = _ini(files["node/etc/systemd/system/" + unit_name(share.mount, ".mount")])
        auto = _ini(files["node/etc/systemd/system/" + unit_name(share.mount, ".automount")])
        assert mount["Mount"]["What"] == f"{spec.network.master_address}:{share.export}"
        assert mount["Mount"]["Where"] == share.mount == auto["Automount"]["Where"]
        assert mount["Mount"]["Type"] == "nfs4"
        assert "_netdev" in mount["Mount"]["Options"].split(",")
        assert auto["Install"]["WantedBy"] == "remote-fs.target"


def test_node_network_takes_hostname_from_dhcp(spec: Spec) -> None:
    net = _ini(render(spec, SECRETS)["node/etc/systemd/network/10-bramble-cluster.network"])
    assert net["Match"]["Name"] == spec.network.cluster_interface
    assert net["Network"]["DHCP"] == "ipv4"
    assert net["DHCPv4"]["UseHostname"] == "yes" and net["DHCPv4"]["SendHostname"] == "yes"


def test_node_asks_every_hour_whether_its_keys_are_due(spec: Spec) -> None:
    """The same timer on every board: an hourly check at a random moment, run once the board
    has enrolled, that rotates and restarts the agent and the worker when the master says."""
    files = render(spec, SECRETS)
    timer = _ini(files["node/etc/systemd/system/bramble-rotate.timer"])
    assert timer["Timer"]["OnCalendar"] == "hourly"
    assert timer["Timer"]["RandomizedDelaySec"] == "1h"
    assert timer["Install"]["WantedBy"] == "timers.target"
    unit = _ini(files["node/etc/systemd/system/bramble-rotate.service"])
    assert unit["Service"]["Type"] == "oneshot"
    assert unit["Unit"]["ConditionPathExists"] == "/etc/bramble/node.toml"
    command = unit["Service"]["ExecStart"].split()
    assert command[1:4] == ["enroll", "--spec", "/etc/bramble/bramble.toml"]
    assert "--if-due" in command
    restarted = [command[i + 1] for i, word in enumerate(command) if word == "--restart"]
    assert restarted == ["bramble-agent.service", "bramble-worker.service"]
    assert not [k for k in files if k.startswith("master/") and "bramble-rotate" in k]


def test_services_restart_always(spec: Spec) -> None:
    files = render(spec, SECRETS)
    for rel in (
        "node/etc/systemd/system/bramble-agent.service",
        "node/etc/systemd/system/bramble-worker.service",
    ):
        unit = _ini(files[rel])
        assert unit["Service"]["Restart"] == "always"
        assert "network-online.target" in unit["Unit"]["After"]


@pytest.mark.parametrize("path", ["/mnt/jobs", "/mnt/data-sets", "/srv/a.b/c_d"])
def test_unit_name_matches_systemd_escape(path: str) -> None:
    if shutil.which("systemd-escape") is None:
        pytest.skip("systemd-escape not installed")
    out = subprocess.run(
        ["systemd-escape", "--path", "--suffix=mount", path], capture_output=True, text=True
    )
    assert unit_name(path, ".mount") == out.stdout.strip()


def _write(files: dict[str, str], prefix: str, dest: Path) -> None:
    for rel, text in files.items():
        if rel.startswith(prefix):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_text(text)


def test_dnsmasq_config_passes_dnsmasq_test(spec: Spec, tmp_path: Path) -> None:
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists():
        pytest.skip("dnsmasq not installed (Debian package dnsmasq-base)")
    conf = tmp_path / "bramble.conf"
    conf.write_text(render(spec, SECRETS)["master/etc/dnsmasq.d/bramble.conf"])
    out = subprocess.run([dnsmasq, "--test", "-C", str(conf)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "syntax check OK" in out.stderr + out.stdout


def test_user_data_passes_cloud_init_schema(spec: Spec, tmp_path: Path) -> None:
    if shutil.which("cloud-init") is None:
        pytest.skip("cloud-init not installed")
    path = tmp_path / "user-data"
    path.write_text(render(spec, SECRETS)[USER_DATA])
    out = subprocess.run(
        ["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Valid cloud-config" in out.stdout


@pytest.mark.parametrize("role", ["master", "node"])
def test_units_pass_systemd_analyze_verify(spec: Spec, role: str, tmp_path: Path) -> None:
    """systemd-analyze verify needs ExecStart binaries: point them at the installed bramble."""
    bramble = shutil.which("bramble")
    if shutil.which("systemd-analyze") is None or bramble is None:
        pytest.skip("needs systemd-analyze and bramble on PATH")
    units = [
        (rel.rsplit("/", 1)[1], text)
        for rel, text in render(spec, SECRETS).items()
        if rel.startswith(f"{role}/etc/systemd/system/")
    ]
    assert units
    for name, text in units:
        (tmp_path / name).write_text(text.replace(BRAMBLE, bramble))
    out = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / n) for n, _ in units)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.root
def test_nftables_ruleset_passes_nft_check(spec: Spec, netns, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`nft -c -f` in a fresh namespace with links named like the spec's interfaces.

    The ruleset matches interfaces by name (iifname), so it loads without them too; the links
    (veth: this kernel has no dummy module) make the namespace look like the master.
    """
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (Debian package nftables)")
    ns = netns()
    for i, ifname in enumerate((spec.network.cluster_interface, spec.network.uplink_interface)):
        subprocess.run(
            ["ip", "-n", ns, "link", "add", ifname, "type", "veth", "peer", "name", f"peer{i}"],
            check=True,
        )
    path = tmp_path / "bramble.nft"
    path.write_text(render(spec, SECRETS)["master/etc/nftables.d/bramble.nft"])
    check = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "-c", "-f", str(path)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    # loading it for real twice (the file deletes its own table first) leaves one table
    for _ in range(2):
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(path)], check=True)
    listed = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "bramble"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "masquerade" in listed and "policy drop" in listed
    tables = subprocess.run(
        ["ip", "netns", "exec", ns, "nft", "list", "tables"], capture_output=True, text=True
    ).stdout
    assert tables.split().count("bramble") == 1


def test_render_to_dir(spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    files = render_to_dir(load_cluster(spec_dir / "bramble.toml"), out)
    printed = capsys.readouterr().out
    assert "rendered" in printed and f"{len(files)} files" in printed
    assert (out / "master/etc/dnsmasq.d/bramble.conf").is_file()
    assert (out / "node/user-data").read_text() == files[USER_DATA]
    assert (out / "master/etc/bramble/bramble.secrets.toml").stat().st_mode & 0o777 == 0o600
    assert (out / "node/etc/bramble/join.toml").stat().st_mode & 0o777 == 0o600
    assert not (out / "node/etc/bramble/bramble.secrets.toml").exists()
    assert (out / "node/etc/bramble/bramble.toml").stat().st_mode & 0o777 == 0o644


def test_render_to_dir_takes_tls_beside_the_spec(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tls = spec_dir / "tls"
    tls.mkdir()
    for name in ("ca.pem", "ca-key.pem", "worker.pem", "worker-key.pem", "scheduler.pem"):
        (tls / name).write_text(f"PEM {name}\n")
    out = tmp_path / "out"
    render_to_dir(load_cluster(spec_dir / "bramble.toml"), out)
    capsys.readouterr()
    assert (out / "node/etc/bramble/tls/ca.pem").read_text() == "PEM ca.pem\n"
    assert not (out / "node/etc/bramble/tls/worker-key.pem").exists()
    assert (out / "master/etc/bramble/tls/scheduler.pem").is_file()
    assert not list(out.rglob("ca-key.pem"))
    assert "/etc/bramble/tls/worker-key.pem" not in (out / "node/user-data").read_text()


def test_units_say_when_jobs_run_without_tls() -> None:
    files = render(parse_spec("[jobs]\ntls = false\n"), None)
    assert "without TLS" in files["node/etc/systemd/system/bramble-worker.service"]
    assert "without TLS" in files["master/etc/systemd/system/bramble-scheduler.service"]
    assert (
        "without TLS"
        not in render(parse_spec(""), None)["node/etc/systemd/system/bramble-worker.service"]
    )
