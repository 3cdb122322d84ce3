"""`bramble apply`: diff, backups, atomic writes, idempotence, and a bad spec changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bramble_testing import SECRETS

from bramble.cluster import load_cluster
from bramble.errors import BrambleError, SpecError
from bramble.provision.apply import (
    Change,
    apply_role,
    plan_changes,
    role_files,
    services_for,
)
from bramble.provision.render import USER_DATA, render


def apply(spec: Path, **options: Any) -> list[Change]:
    """`bramble apply` with the spec at SPEC, loaded as the CLI loads it."""
    return apply_role(load_cluster(spec), **options)


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mode & 0o7777)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("role", ["master", "node"])
def test_apply_twice_second_reports_no_changes(
    role: str, spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    spec = spec_dir / "bramble.toml"
    first = apply(spec, role=role, root=root, dry_run=False)
    out = capsys.readouterr().out
    assert first and "+++ /etc/bramble/bramble.toml" in out
    assert "not touching services (--root given)" in out
    installed = _snapshot(root)
    assert set(installed) == {c.path for c in first}
    assert "user-data" not in " ".join(installed)
    private = "bramble.secrets.toml" if role == "master" else "join.toml"
    assert installed[f"etc/bramble/{private}"][1] == 0o600
    assert ("etc/bramble/bramble.secrets.toml" in installed) == (role == "master")
    assert installed["etc/bramble/bramble.toml"][1] == 0o644
    assert not (root / "var").exists(), "nothing replaced, nothing backed up"

    second = apply(spec, role=role, root=root, dry_run=False)
    assert second == []
    assert "no changes" in capsys.readouterr().out
    assert _snapshot(root) == installed


def test_apply_backs_up_replaced_files_and_keeps_their_mode(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    conf = root / "etc/dnsmasq.d/bramble.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("interface=old0\n")
    conf.chmod(0o640)
    apply(spec_dir / "bramble.toml", role="master", root=root, dry_run=False)
    out = capsys.readouterr().out
    assert "-interface=old0" in out and "+interface=eth0" in out
    assert sorted(p.name for p in conf.parent.iterdir()) == ["bramble.conf"]
    backups = list((root / "var/backups/bramble").glob("*/etc/dnsmasq.d/bramble.conf"))
    assert len(backups) == 1 and backups[0].read_text() == "interface=old0\n"
    assert backups[0].stat().st_mode & 0o777 == 0o640
    assert "interface=eth0" in conf.read_text()
    assert conf.stat().st_mode & 0o777 == 0o640
    assert not [p for p in root.rglob(".*") if p.is_file()], "no temporary files left behind"


def test_spec_change_rewrites_only_what_it_touches(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    spec = spec_dir / "bramble.toml"
    apply(spec, role="master", root=root, dry_run=False)
    capsys.readouterr()
    spec.write_text(spec.read_text() + '\n[[nodes]]\nname = "node-9"\nmac = "b8:27:eb:00:00:09"\n')
    changes = apply(spec, role="master", root=root, dry_run=False)
    assert sorted(c.path for c in changes) == [
        "etc/bramble/bramble.toml",
        "etc/dnsmasq.d/bramble.conf",
    ]
    out = capsys.readouterr().out
    assert "+dhcp-host=b8:27:eb:00:00:09,node-9" in out
    assert "systemctl restart dnsmasq.service" in out


def test_spec_installed_verbatim_and_reapply_from_it_changes_nothing(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The master's /etc/bramble/bramble.toml keeps its comments; applying from it is a no-op."""
    root = tmp_path / "root"
    spec = spec_dir / "bramble.toml"
    apply(spec, role="master", root=root, dry_run=False)
    installed = root / "etc/bramble/bramble.toml"
    assert installed.read_text() == spec.read_text()
    assert installed.read_text().startswith("# A four-board cluster")
    capsys.readouterr()
    assert apply(installed, role="master", root=root, dry_run=False) == []
    assert "no changes" in capsys.readouterr().out


def test_dry_run_changes_nothing(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    changes = apply(spec_dir / "bramble.toml", role="node", root=root, dry_run=True)
    assert changes
    assert "dry run: would change" in capsys.readouterr().out
    assert _snapshot(root) == {}


def test_bad_spec_changes_nothing(spec_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    spec = spec_dir / "bramble.toml"
    apply(spec, role="master", root=root, dry_run=False)
    before = _snapshot(root)
    spec.write_text(spec.read_text().replace('"10.42.0.11"', '"10.99.0.11"'))
    with pytest.raises(SpecError, match="outside the subnet"):
        apply(spec, role="master", root=root, dry_run=False)
    assert _snapshot(root) == before


def test_cli_bad_spec_exit_2_and_nothing_written(spec_dir: Path, tmp_path: Path) -> None:
    bramble = shutil.which("bramble")
    if bramble is None:
        pytest.skip("bramble is not on PATH (pip install -e .)")
    spec = spec_dir / "bramble.toml"
    spec.write_text(spec.read_text() + '\n[[nodes]]\nname = "node-1"\nmac = "zz"\n')
    root = tmp_path / "root"
    out = subprocess.run(
        [bramble, "apply", "--role", "master", "--spec", str(spec), "--root", str(root)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "not a MAC address" in out.stderr and "Traceback" not in out.stderr
    assert not root.exists()


def test_unknown_role(spec_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BrambleError, match="unknown role"):
        apply(spec_dir / "bramble.toml", role="worker", root=tmp_path, dry_run=False)


def test_role_files_exclude_user_data() -> None:
    from bramble.spec import parse_spec

    rendered = render(parse_spec(""), SECRETS)
    node = role_files(rendered, "node")
    assert USER_DATA in rendered and "user-data" not in node
    assert all(k.startswith("etc/") for k in node)


def test_plan_changes() -> None:
    files = {"etc/a": "A\n", "etc/b": "B\n", "etc/c": "C\n"}
    plan = plan_changes(files, {"etc/a": "A\n", "etc/b": "old\n", "etc/c": None})
    assert plan == [Change("etc/b", "old\n", "B\n"), Change("etc/c", None, "C\n")]
    assert plan[1].diff().startswith("--- /dev/null\n+++ /etc/c\n")


def test_colour_marks_added_and_removed_lines() -> None:
    from bramble.provision.apply import _colour

    diff = Change("etc/x", "a\nb\n", "a\nc\n").diff()
    coloured = _colour(diff)
    assert "\x1b[31m-b\x1b[0m" in coloured and "\x1b[32m+c\x1b[0m" in coloured
    assert " a\n" in coloured


def test_services_for_maps_files_to_services() -> None:
    assert services_for("master", []) == []
    assert services_for("master", ["etc/dnsmasq.d/bramble.conf"]) == [
        ["systemctl", "restart", "dnsmasq.service"]
    ]
    cmds = services_for("node", ["etc/systemd/system/mnt-jobs.mount"])
    assert cmds[0] == ["systemctl", "daemon-reload"]
    assert ["systemctl", "restart", "mnt-jobs.automount"] in cmds
    cmds = services_for("master", ["etc/nftables.d/bramble.nft"])
    assert ["systemctl", "restart", "bramble-nftables.service"] in cmds
    cmds = services_for("node", ["etc/bramble/bramble.toml"])
    assert ["systemctl", "restart", "bramble-agent.service", "bramble-worker.service"] in cmds
    cmds = services_for("master", ["etc/bramble/bramble.toml"])
    assert [
        "systemctl",
        "restart",
        "bramble-agent.service",
        "bramble-master.service",
        "bramble-scheduler.service",
    ] in cmds
    assert ["exportfs", "-ra"] in services_for("master", ["etc/exports.d/bramble.exports"])
    assert ["sysctl", "--system"] in services_for("master", ["etc/sysctl.d/90-bramble.conf"])
    # the installer is enabled, never restarted by apply (it may wait for the master)
    cmds = services_for("node", ["etc/systemd/system/bramble-install.service"])
    assert ["systemctl", "enable", "bramble-install.service"] in cmds
    assert not [c for c in cmds if c[1] == "restart" and "bramble-install.service" in c]
    # the hourly rotation check: its timer enabled and started, the check itself never run
    cmds = services_for(
        "node",
        ["etc/systemd/system/bramble-rotate.service", "etc/systemd/system/bramble-rotate.timer"],
    )
    assert ["systemctl", "enable", "bramble-rotate.timer"] in cmds
    assert ["systemctl", "restart", "bramble-rotate.timer"] in cmds
    assert not [c for c in cmds if "bramble-rotate.service" in c]
    # the jobs user exists before the directories that belong to it are made
    cmds = services_for("master", ["etc/tmpfiles.d/bramble.conf", "etc/sysusers.d/bramble.conf"])
    assert cmds.index(["systemd-sysusers"]) < cmds.index(["systemd-tmpfiles", "--create"])


def test_secrets_forced_private_even_if_installed_wider(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    secrets = root / "etc/bramble/bramble.secrets.toml"
    secrets.parent.mkdir(parents=True)
    secrets.write_text("old\n")
    os.chmod(secrets, 0o644)
    apply(spec_dir / "bramble.toml", role="master", root=root, dry_run=False)
    assert secrets.stat().st_mode & 0o777 == 0o600
    backup = next((root / "var/backups/bramble").glob("*/etc/bramble/bramble.secrets.toml"))
    assert backup.read_text() == "old\n"
    assert backup.stat().st_mode & 0o777 == 0o600


# --- on a real Debian master: backups, secrets in diffs ------------------------------------

DEBIAN_CONFIG_DIR = "{},.dpkg-dist,.dpkg-old,.dpkg-new"


def _add_node(spec: Path, n: int) -> None:
    spec.write_text(
        spec.read_text() + f'\n[[nodes]]\nname = "node-{n}"\nmac = "b8:27:eb:00:00:{n:02x}"\n'
    )


def test_two_changing_applies_leave_dnsmasq_d_loadable_by_debians_dnsmasq(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Debian's dnsmasq reads every file of /etc/dnsmasq.d but *.dpkg-*; backups stay out.

    The package's init script and systemd helper run `dnsmasq --test -7 CONFIG_DIR` with
    CONFIG_DIR=/etc/dnsmasq.d,.dpkg-dist,.dpkg-old,.dpkg-new (/etc/default/dnsmasq), and a
    stock /etc/dnsmasq.conf is all comments, so /dev/null stands in for it here.
    """
    dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(dnsmasq).exists():
        pytest.skip("dnsmasq not installed (Debian package dnsmasq-base)")
    root = tmp_path / "root"
    spec = spec_dir / "bramble.toml"
    apply(spec, role="master", root=root, dry_run=False)
    for n in (9, 10):
        _add_node(spec, n)
        assert apply(spec, role="master", root=root, dry_run=False)
    out = capsys.readouterr().out
    conf_dir = root / "etc/dnsmasq.d"
    assert sorted(p.name for p in conf_dir.iterdir()) == ["bramble.conf"]
    test = subprocess.run(
        [dnsmasq, "--test", "--conf-file=/dev/null", "-7", DEBIAN_CONFIG_DIR.format(conf_dir)],
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stderr
    assert "syntax check OK" in test.stdout + test.stderr
    # Both replaced versions are kept, under /var/backups/bramble/<stamp>/<path>.
    backups = sorted((root / "var/backups/bramble").glob("*/etc/dnsmasq.d/bramble.conf"))
    assert len(backups) == 2
    assert "node-9" not in backups[0].read_text() and "node-9" in backups[1].read_text()
    assert "node-10" not in backups[1].read_text()
    assert "/var/backups/bramble/" in out


def _with_tls(spec_dir: Path) -> None:
    from bramble.jobs.tls import create_tls_for_spec

    create_tls_for_spec(spec_dir)


def _key_material(spec_dir: Path) -> list[str]:
    """Every line of base64 inside the private keys beside the spec, and the secrets' values."""
    from bramble.spec import load_secrets

    lines = []
    for pem in (spec_dir / "tls").glob("*-key.pem"):
        lines += [line for line in pem.read_text().splitlines() if "-----" not in line]
    secrets = load_secrets(spec_dir / "bramble.toml")
    return [*lines, secrets.admin_token, secrets.telemetry_key.hex(), secrets.join_token]


@pytest.mark.parametrize("role", ["master", "node"])
def test_dry_run_prints_no_key_material(
    role: str, spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_tls(spec_dir)
    apply(spec_dir / "bramble.toml", role=role, root=tmp_path / "root", dry_run=True)
    out = capsys.readouterr().out
    private = "bramble.secrets.toml" if role == "master" else "join.toml"
    assert f"+++ /etc/bramble/{private}" in out  # the file is named, not shown
    assert "PRIVATE KEY" not in out
    for secret in _key_material(spec_dir):
        assert secret not in out


def test_diff_of_a_changed_secret_shows_that_it_changed_not_the_values(
    spec_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _with_tls(spec_dir)
    root = tmp_path / "root"
    spec = spec_dir / "bramble.toml"
    apply(spec, role="master", root=root, dry_run=False)
    old = _key_material(spec_dir)
    capsys.readouterr()
    secrets = spec_dir / "bramble.secrets.toml"
    secrets.write_text(secrets.read_text().replace("golden-admin-token", "rotated-admin-token"))
    new = _key_material(spec_dir)
    changes = apply(spec, role="master", root=root, dry_run=False)
    assert [c.path for c in changes] == ["etc/bramble/bramble.secrets.toml"]
    out = capsys.readouterr().out
    token_lines = [line for line in out.splitlines() if line.startswith(("-token", "+token"))]
    assert len(token_lines) == 2 and token_lines[0][1:] != token_lines[1][1:]
    assert not [line for line in out.splitlines() if line.startswith(("-key =", "+key ="))]
    for secret in old + new:
        assert secret not in out
    backup = next((root / "var/backups/bramble").glob("*/etc/bramble/bramble.secrets.toml"))
    assert backup.stat().st_mode & 0o777 == 0o600
    assert backup.parent.parent.parent.parent.stat().st_mode & 0o777 == 0o700


# --- what the machine needs -------------------------------------------------------------


def _fake_machine(root: Path, role: str, *, version: str | None = None) -> None:
    """A root with every program the ROLE needs, and bramble in /opt/bramble at VERSION."""
    from bramble import __version__
    from bramble.provision.preflight import NEEDS

    for need in NEEDS[role]:
        path = root / need.paths[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    bramble = root / "opt/bramble/bin/bramble"
    bramble.parent.mkdir(parents=True)
    bramble.write_text("#!/bin/sh\n")
    bramble.chmod(0o755)
    site = root / "opt/bramble/lib/python3.11/site-packages"
    (site / "bramble").mkdir(parents=True)
    info = site / "bramble_cluster-0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: bramble-cluster\nVersion: {version or __version__}\n"
    )


@pytest.mark.parametrize("role", ["master", "node"])
def test_checks_under_root_say_what_is_missing_one_line_each(
    role: str, spec_dir: Path, tmp_path: Path
) -> None:
    from bramble.provision.preflight import PreflightError

    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(PreflightError) as raised:
        apply(spec_dir / "bramble.toml", role=role, root=root, dry_run=False, checks=True)
    lines = str(raised.value).splitlines()
    assert "nothing changed" in lines[0]
    missing = [line.strip().split(":")[0] for line in lines[1:]]
    assert missing[0] == "/opt/bramble/bin/bramble"
    assert "systemctl" in missing and "chronyd" in missing
    if role == "master":
        assert {"dnsmasq", "dnsmasq.service", "nft", "exportfs"} <= set(missing)
    assert list(root.iterdir()) == [], "nothing written"
    _fake_machine(root, role)
    assert apply(spec_dir / "bramble.toml", role=role, root=root, dry_run=False, checks=True)


def test_checks_name_an_older_bramble_in_opt(spec_dir: Path, tmp_path: Path) -> None:
    from bramble.provision.preflight import PreflightError

    root = tmp_path / "root"
    _fake_machine(root, "master", version="0.0.1")
    with pytest.raises(PreflightError, match=r"/opt/bramble has bramble 0\.0\.1, this is "):
        apply(spec_dir / "bramble.toml", role="master", root=root, dry_run=True, checks=True)


def test_cli_checks_exit_2_and_no_checks_skips(spec_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    base = [sys.executable, "-m", "bramble", "apply", "--role", "master"]
    base += ["--spec", str(spec_dir / "bramble.toml"), "--root", str(root)]
    out = subprocess.run([*base, "--checks"], capture_output=True, text=True)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "dnsmasq: not found: apt install dnsmasq" in out.stderr
    assert "Traceback" not in out.stderr
    skipped = subprocess.run([*base, "--dry-run"], capture_output=True, text=True)
    assert skipped.returncode == 0, skipped.stderr
    assert "not checking" in skipped.stdout and "--checks does" in skipped.stdout
