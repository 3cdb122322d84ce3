"""`bramble apply`: diff, backups, atomic writes, idempotence, and a bad spec changes nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
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
    assert installed["etc/bramble/bramble.secrets.toml"][1] == 0o600
    assert installed["etc/bramble/bramble.toml"][1] == 0o644
    assert not list(root.rglob("*.bramble-bak.*")), "nothing replaced, nothing backed up"

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
    backups = list(conf.parent.glob("bramble.conf.bramble-bak.*"))
    assert len(backups) == 1 and backups[0].read_text() == "interface=old0\n"
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
    apply(spec_dir / "bramble.toml", role="node", root=root, dry_run=False)
    assert secrets.stat().st_mode & 0o777 == 0o600
    backup = next(secrets.parent.glob("bramble.secrets.toml.bramble-bak.*"))
    assert backup.read_text() == "old\n"
    assert backup.stat().st_mode & 0o777 == 0o600
