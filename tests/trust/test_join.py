"""Rotating the join token: the secrets file keeps the old one with its end; the master
accepts it until then; `bramble keys rotate --join` writes it, private."""

from __future__ import annotations

import stat
from pathlib import Path

from typer.testing import CliRunner

from bramble.cli import app
from bramble.init import init_directory
from bramble.master.main import _join_tokens
from bramble.provision.render import secrets_toml
from bramble.spec import load_secrets, parse_secrets
from bramble.trust.join import rotate_join
from bramble.trust.policy import check_token


def test_rotation_keeps_the_old_token_until_the_overlap_ends(tmp_path: Path) -> None:
    init_directory(tmp_path)
    before = load_secrets(tmp_path / "bramble.toml")
    after = rotate_join(before, now=1000.0, overlap_days=1)
    assert after.join_token != before.join_token and after.join_previous == before.join_token
    assert parse_secrets(secrets_toml(after)) == after  # the master's file keeps both
    tokens = _join_tokens(after)
    assert check_token(before.join_token, tokens, 1000.0 + 86399) == "ok"
    assert check_token(before.join_token, tokens, 1000.0 + 86401) == "expired"
    assert check_token(after.join_token, tokens, 1e12) == "ok"


def test_keys_rotate_join_writes_the_secrets_file(tmp_path: Path) -> None:
    init_directory(tmp_path)
    spec = tmp_path / "bramble.toml"
    before = load_secrets(spec)
    run = CliRunner().invoke(app, ["keys", "rotate", "--join", "--spec", str(spec)])
    assert run.exit_code == 0, run.output
    assert "the old one enrolls boards until" in run.output
    after = load_secrets(spec)
    assert after.join_previous == before.join_token and after.admin_token == before.admin_token
    assert stat.S_IMODE((tmp_path / "bramble.secrets.toml").stat().st_mode) == 0o600
