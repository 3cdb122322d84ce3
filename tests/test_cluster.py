"""The Cluster value: a spec on disk read once, with the secrets and TLS material beside it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bramble.cluster import ENV_SPEC, find_cluster, load_cluster
from bramble.errors import SpecError
from bramble.init import secrets_text, spec_text


@pytest.fixture
def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "bramble.toml"
    path.write_text(spec_text())
    return path


def test_load_keeps_the_text_and_reads_the_secrets(spec_file: Path) -> None:
    (spec_file.parent / "bramble.secrets.toml").write_text(secrets_text())
    cluster = load_cluster(spec_file)
    assert cluster.path == spec_file and cluster.text == spec_file.read_text()
    assert len(cluster.spec.nodes) == 4
    assert cluster.secrets().telemetry_key_id == "k1"
    assert cluster.secrets_if_present() == cluster.secrets()
    assert cluster.tls.directory == spec_file.parent.absolute() / "tls"
    assert cluster.master_url == "http://10.42.0.1:8080"


def test_missing_secrets_fail_only_the_commands_that_need_them(spec_file: Path) -> None:
    cluster = load_cluster(spec_file)
    assert cluster.secrets_if_present() is None
    with pytest.raises(SpecError, match="secrets file not found") as caught:
        cluster.secrets()
    assert "bramble.secrets.toml" in str(caught.value) and "bramble init" in str(caught.value)


def test_an_invalid_secrets_file_is_an_error_when_used(spec_file: Path) -> None:
    (spec_file.parent / "bramble.secrets.toml").write_text("[telemetry]\nkey_id = 'k1'\n")
    cluster = load_cluster(spec_file)  # `bramble check` still works
    for use in (cluster.secrets, cluster.secrets_if_present):
        with pytest.raises(SpecError, match=r"needs \[telemetry\] and \[admin\]"):
            use()


def test_find_uses_bramble_spec_before_the_search_for_every_command(
    spec_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `bramble lab exec master -- bramble status` sets only $BRAMBLE_SPEC, as for `bramble run`
    here = tmp_path / "cwd"
    here.mkdir()
    shutil.copy(spec_file, here / "bramble.toml")
    monkeypatch.chdir(here)
    monkeypatch.setenv(ENV_SPEC, str(spec_file))
    assert find_cluster().path == spec_file
    assert find_cluster(env=False).path == Path("bramble.toml")
    assert find_cluster(here / "bramble.toml").path == here / "bramble.toml"


def test_an_unreadable_spec_says_so(tmp_path: Path) -> None:
    bad = tmp_path / "bramble.toml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_cluster(bad)
    with pytest.raises(SpecError, match="no such file"):
        find_cluster(tmp_path / "missing.toml")


def test_spec_macs_follow_the_file_else_the_loaded_spec(spec_file: Path) -> None:
    cluster = load_cluster(spec_file)
    assert cluster.spec_macs()["b8:27:eb:00:00:01"] == "node-1"
    spec_file.write_text(
        spec_file.read_text() + '\n[[nodes]]\nname = "node-9"\nmac = "02:00:00:00:00:09"\n'
    )
    assert cluster.spec_macs()["02:00:00:00:00:09"] == "node-9"
    spec_file.write_text("[[nodes]]\nname = 'bad'\n")
    assert "02:00:00:00:00:09" not in cluster.spec_macs()
    assert cluster.spec_macs()["b8:27:eb:00:00:01"] == "node-1"
