"""The spec: defaults, every validation error with its location and fix, and secrets."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bramble.errors import BrambleError, SpecError
from bramble.init import init_directory, spec_text
from bramble.spec import (
    SpecErrors,
    find_spec_path,
    load_secrets,
    load_spec,
    parse_secrets,
    parse_spec,
    secrets_mode_ok,
)

EXAMPLES = Path(__file__).parent.parent / "examples"

NODES = """
[[nodes]]
name = "node-1"
mac = "b8:27:eb:00:00:01"
address = "10.42.0.11"

[[nodes]]
name = "node-2"
mac = "b8:27:eb:00:00:02"
"""


def error(text: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "test.toml")
    return caught.value


def test_defaults_are_the_original_system() -> None:
    spec = parse_spec(NODES)
    assert str(spec.network.subnet) == "10.42.0.0/24"
    assert str(spec.telemetry.group) == "224.0.0.251" and spec.telemetry.port == 6000
    assert spec.shares[0].export == "/srv/jobs" and spec.shares[0].mount == "/mnt/jobs"
    assert spec.dashboard_bind == "10.42.0.1"
    assert spec.fqdn("node-1") == "node-1.cluster"
    assert spec.nodes[1].address is None


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.name)
def test_examples_load(path: Path) -> None:
    assert load_spec(path).nodes


def test_bad_mac() -> None:
    err = error(NODES.replace("b8:27:eb:00:00:02", "b8:27:eb:00:02"))
    assert err.key == "nodes[1].mac" and err.line == 9 and err.file == "test.toml"
    assert "six hex pairs" in str(err)


def test_multicast_mac_is_not_a_board() -> None:
    assert "multicast" in str(error(NODES.replace("b8:27:eb:00:00:02", "01:00:5e:00:00:02")))


def test_mac_is_normalised() -> None:
    spec = parse_spec(NODES.replace("b8:27:eb:00:00:02", "B8-27-EB-00-00-AA"))
    assert spec.nodes[1].mac == "b8:27:eb:00:00:aa"


def test_duplicate_mac() -> None:
    err = error(NODES.replace("b8:27:eb:00:00:02", "B8:27:EB:00:00:01"))
    assert err.key == "nodes[1].mac" and err.line == 9
    assert "duplicate MAC" in str(err) and "nodes[0].mac" in str(err)


def test_duplicate_name_and_clash_with_master() -> None:
    err = error(NODES.replace('"node-2"', '"node-1"'))
    assert err.key == "nodes[1].name" and err.line == 8 and "duplicate name" in str(err)
    err = error(NODES.replace('"node-2"', '"master"'))
    assert "master.name" in str(err)


def test_duplicate_address_and_clash_with_master() -> None:
    text = NODES + 'address = "10.42.0.11"\n'
    err = error(text)
    assert err.key == "nodes[1].address" and err.line == 10 and "duplicate address" in str(err)
    err = error(NODES.replace("10.42.0.11", "10.42.0.1"))
    assert "network.master_address" in str(err)


def test_address_outside_the_subnet() -> None:
    err = error(NODES.replace("10.42.0.11", "10.43.0.11"))
    assert err.key == "nodes[0].address" and err.line == 5 and "outside the subnet" in str(err)
    err = error('[network]\nmaster_address = "192.168.1.1"\n')
    assert err.key == "network.master_address" and err.line == 2


def test_dhcp_range_overlapping_fixed_addresses_or_the_master() -> None:
    err = error(NODES.replace("10.42.0.11", "10.42.0.150"))
    assert err.key == "nodes[0].address" and "inside the DHCP range" in str(err)
    assert "outside the range" in (err.fix or "")
    err = error('[network]\ndhcp_start = "10.42.0.1"\n')
    assert err.key == "network.dhcp_start" and "contains the master address" in str(err)
    err = error('[network]\ndhcp_start = "10.42.0.200"\ndhcp_end = "10.42.0.100"\n')
    assert "reversed" in str(err)


@pytest.mark.parametrize("value", ["0", "-1", "0.0"])
def test_interval_must_be_positive(value: str) -> None:
    err = error(f"[telemetry]\ninterval = {value}\n")
    assert err.key == "telemetry.interval" and err.line == 2 and "more than 0" in str(err)


def test_unknown_keys_suggest_the_close_one() -> None:
    err = error("[telemetry]\nintervall = 1\n")
    assert err.key == "telemetry.intervall" and err.line == 2
    assert "unknown key" in str(err) and "did you mean 'interval'?" in str(err)
    err = error("[telemetri]\ninterval = 1\n")
    assert err.key == "telemetri" and err.line == 1 and "telemetry" in str(err)
    err = error(NODES + 'colour = "red"\n')
    assert err.key == "nodes[1].colour" and "allowed keys" in str(err)


def test_bad_names_and_toml_syntax() -> None:
    assert "host name" in str(error(NODES.replace('"node-2"', '"Node_2"')))
    err = error('[network\nsubnet = "x"\n')
    assert err.line == 1 and "not valid TOML" in str(err)


def test_stale_before_down() -> None:
    err = error("[telemetry]\nstale_after = 10\ndown_after = 5\n")
    assert err.key == "telemetry.stale_after" and err.line == 2


def test_every_problem_is_listed() -> None:
    text = NODES.replace("b8:27:eb:00:00:02", "b8:27:eb:00:00:01").replace(
        "10.42.0.11", "10.99.0.11"
    )
    with pytest.raises(SpecErrors) as caught:
        parse_spec(text, "test.toml")
    keys = [e.key for e in caught.value.errors]
    assert keys == ["nodes[0].address", "nodes[1].mac"]
    assert "(and 1 more)" in str(caught.value)


def test_find_spec_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SpecError, match="bramble init"):
        find_spec_path(None)
    (tmp_path / "bramble.toml").write_text(NODES)
    assert find_spec_path(None) == Path("bramble.toml")
    with pytest.raises(SpecError, match="no such file"):
        find_spec_path(tmp_path / "missing.toml")


def test_init_writes_a_loadable_spec_and_private_secrets(tmp_path: Path) -> None:
    written = init_directory(tmp_path / "c")
    spec_path = tmp_path / "c" / "bramble.toml"
    assert spec_path in written
    assert load_spec(spec_path).nodes
    assert secrets_mode_ok(spec_path)
    assert os.stat(tmp_path / "c" / "bramble.secrets.toml").st_mode & 0o777 == 0o600
    secrets = load_secrets(spec_path)
    assert len(secrets.telemetry_key) == 32 and len(secrets.admin_token) >= 32
    assert len(secrets.join_token) >= 32 and secrets.join_token != secrets.admin_token
    with pytest.raises(BrambleError, match="--force"):
        init_directory(tmp_path / "c")
    init_directory(tmp_path / "c", force=True)
    assert load_secrets(spec_path).telemetry_key != secrets.telemetry_key


def test_secrets_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="bramble init"):
        load_secrets(tmp_path / "bramble.toml")
    with pytest.raises(SpecError) as caught:
        parse_secrets('[telemetry]\nkey_id = "k1"\nkey = "abcd"\n[admin]\ntoken = "x"\n')
    assert caught.value.key == "telemetry.key"
    good = f'[telemetry]\nkey_id = "k1"\nkey = "{"ab" * 32}"\n[admin]\ntoken = "{"t" * 16}"\n'
    assert parse_secrets(good).join_token == ""
    with pytest.raises(SpecError) as caught:
        parse_secrets(good + '[join]\ntoken = "short"\n')
    assert caught.value.key == "join.token"


def test_check_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bramble.toml"
    bad.write_text(NODES.replace("b8:27:eb:00:00:02", "zz"))
    run = subprocess.run(
        [sys.executable, "-m", "bramble", "check", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert f"{bad}:9: nodes[1].mac:" in run.stderr
    # The examples are templates kept without secrets: --spec-only checks the spec alone.
    good = subprocess.run(
        [sys.executable, "-m", "bramble", "check", "--spec-only", str(EXAMPLES / "bramble.toml")],
        capture_output=True,
        text=True,
    )
    assert good.returncode == 0 and "ok (4 nodes; secrets not checked)" in good.stdout


def _check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bramble", "check", *args], capture_output=True, text=True
    )


def test_check_fails_a_spec_without_its_secrets_as_the_agent_would(tmp_path: Path) -> None:
    spec = tmp_path / "bramble.toml"
    spec.write_text(NODES)
    secrets = tmp_path / "bramble.secrets.toml"
    run = _check(str(spec))
    assert run.returncode == 2
    assert run.stderr.startswith(f"error: {secrets}: secrets file not found beside the spec")
    assert run.stderr.count("\n") == 1 and "--spec-only" in run.stderr
    agent = subprocess.run(
        [sys.executable, "-m", "bramble", "agent", "--spec", str(spec), "--count", "1"],
        capture_output=True,
        text=True,
    )
    assert agent.returncode == 2 and "secrets file not found" in agent.stderr
    # With its secrets (private), the same spec passes; readable by others, it is warned about.
    init_directory(tmp_path / "made")
    secrets.write_bytes((tmp_path / "made" / "bramble.secrets.toml").read_bytes())
    secrets.chmod(0o600)
    run = _check(str(spec))
    assert run.returncode == 0 and run.stderr == ""
    assert run.stdout == f"{spec}: ok (2 nodes; secrets in bramble.secrets.toml)\n"
    secrets.chmod(0o644)
    run = _check(str(spec))
    assert run.returncode == 0
    assert (
        run.stderr == f"warning: {secrets} is readable by others (mode 0644): chmod 600 {secrets}\n"
    )
    # A damaged secrets file fails with its key path.
    secrets.write_text('[telemetry]\nkey_id = "k1"\nkey = "ab"\n[admin]\ntoken = "x"\n')
    run = _check(str(spec))
    assert run.returncode == 2 and "telemetry.key" in run.stderr


macs = st.lists(st.integers(0, 2**40 - 1), min_size=0, max_size=20, unique=True)


@settings(max_examples=50, deadline=None)
@given(macs)
def test_generated_node_lists_round_trip(values: list[int]) -> None:
    nodes = [
        (f"n{i}", ":".join(f"{b:02x}" for b in (2, *tuple(v.to_bytes(5, "big")))), None)
        for i, v in enumerate(values)
    ]
    spec = parse_spec(spec_text(nodes))  # type: ignore[arg-type]
    assert [(n.name, n.mac) for n in spec.nodes] == [(n, m) for n, m, _ in nodes]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_garbage_text_only_ever_raises_spec_error(text: str) -> None:
    with contextlib.suppress(SpecError):
        parse_spec(text)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["network", "telemetry", "nodes", "dashboard", "x"]),
        st.dictionaries(
            st.sampled_from(["subnet", "interval", "port", "name", "mac", "zz"]),
            st.one_of(st.integers(-5, 70000), st.text(max_size=20), st.floats(allow_nan=False)),
        ),
    )
)
def test_wrong_values_only_ever_raise_spec_error(data: dict[str, dict[str, object]]) -> None:
    import tomlkit

    with contextlib.suppress(SpecError):
        parse_spec(tomlkit.dumps(data))
