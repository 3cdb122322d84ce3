"""Fuzz harnesses shared by the suite (small runs) and bench/fuzz.py (large runs).

- Specs: hypothesis builds `bramble.toml` texts mixing good values with hostile ones
  (injections, quotes, newlines, non-finite numbers, wide subnets, system paths). A text
  that passes `parse_spec` is rendered, and every config file must pass its own tool
  (`nft` loads it for real in a namespace, `dnsmasq --test`, `systemd-analyze verify`)
  and must not be open: the firewall is read back as JSON and every rule that accepts is
  checked, the exports go to the spec's subnet alone, each file has the lines its template
  makes and no more.
- Datagrams: well-formed signed and unsigned datagrams, mutated (bytes flipped, cut, values
  swapped for huge, non-finite or non-text ones, nesting, wrong types), sent to a master.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from bramble.provision.render import BRAMBLE, render
from bramble.spec import Secrets, Spec

SECRETS = Secrets("k1", bytes(range(32)), "fuzz-admin-token-0123456789abcdef")

# --- specs ------------------------------------------------------------------------------

HOSTILE_TEXT = [
    'w"accept#', "w\nDHCP=no", "eth0;", "eth0 ", "a\u0000", "..", ".", "eth:0", "e" * 16,
    "$(reboot)", "x\ry", "\\", "'", "#", "é", "\ud800", "", "{", "}", "*", "eth0\t",
]  # fmt: skip
IFNAMES = ["eth0", "wlan0", "end0", "enp0s3", "br-lan", "eth0.100", "usb0", "e_1"]
PATHS = ["/srv/jobs", "/srv/data", "/mnt/jobs", "/mnt/data", "/var/nfs/jobs", "/data/x"]
HOSTILE_PATHS = [
    "/", "/etc", "/mnt/../etc", "/srv//jobs", "/srv/./jobs", "relative", "/srv/jo bs",
    "/srv/jobs,rw", "/srv/#x", "/proc/1", "/usr/local/x", "/srv/jobs\n/ *(rw)", "/mnt",
    "/srv/jo\"bs", "/srv/jobs/", "//srv/jobs", "/home",
]  # fmt: skip
SUBNETS = [
    ("10.42.0.0/24", "10.42.0.1", "10.42.0.100", "10.42.0.199"),
    ("192.168.42.0/24", "192.168.42.1", "192.168.42.50", "192.168.42.99"),
    ("10.0.0.0/8", "10.0.0.1", "10.1.0.1", "10.1.0.250"),
    ("0.0.0.0/0", "10.42.0.1", "10.42.0.100", "10.42.0.199"),
    ("8.8.8.0/24", "8.8.8.1", "8.8.8.100", "8.8.8.199"),
    ("172.16.0.0/12", "172.16.0.1", "172.16.1.1", "172.16.1.99"),
]
NUMBERS: list[float | str] = [1.0, 0.5, 2, 0.01, 3600, "nan", "inf", "-inf", 0, -1, 1e308]


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value in ("nan", "inf", "-inf", "+inf"):
        return value  # TOML's own non-finite floats
    if isinstance(value, str):
        return json.dumps(value)  # TOML basic strings take JSON's escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


FIELDS = (
    "cluster_interface", "uplink_interface", "domain", "lease_time", "subnet", "interval",
    "stale_after", "down_after", "clock_window", "unicast", "history_path", "raw_hours",
    "bind", "jobs_dir", "export", "mount", "node_name",
)  # fmt: skip


@st.composite
def spec_texts(draw: st.DrawFn) -> str:
    """A bramble.toml text: good values, with one or two keys (that reach config files)
    given hostile ones, so most hostile values meet an otherwise good spec."""
    hostile = set(draw(st.lists(st.sampled_from(FIELDS), min_size=0, max_size=2)))

    def pick(key: str, good: list[Any], bad: list[Any]) -> Any:
        return draw(st.sampled_from(bad if key in hostile else good))

    subnets = SUBNETS if "subnet" in hostile else [s for s in SUBNETS if "/0" not in s[0]][:3]
    subnet, master, start, end = draw(st.sampled_from(subnets))
    network = {
        "subnet": subnet,
        "master_address": master,
        "dhcp_start": start,
        "dhcp_end": end,
        "cluster_interface": pick("cluster_interface", IFNAMES[:4], HOSTILE_TEXT),
        "uplink_interface": pick("uplink_interface", IFNAMES[4:], [*HOSTILE_TEXT, "eth0"]),
        "domain": pick("domain", ["cluster", "lab.example", "c1"], HOSTILE_TEXT),
        "lease_time": pick(
            "lease_time", ["12h", "30m", "3600", "infinite"], [*HOSTILE_TEXT, "9" * 30]
        ),
    }
    good_numbers: list[Any] = [1.0, 0.5, 2]
    bad_numbers: list[Any] = ["nan", "inf", "-inf", 0, -1, 1e308, 0.001]
    telemetry = {
        "interval": pick("interval", good_numbers, bad_numbers),
        "stale_after": pick("stale_after", [3, 2.5], bad_numbers),
        "down_after": pick("down_after", [10, 20], bad_numbers),
        "clock_window": pick("clock_window", [30.0, 5], bad_numbers),
        "unicast": pick("unicast", [[], ["10.42.0.1"], ["m.cluster:6000"]], [["a\nb:1"], ['a"']]),
    }
    history = {
        "path": pick("history_path", ["/var/lib/bramble/history.db"], HOSTILE_PATHS),
        "raw_hours": pick("raw_hours", [24, 1], [*bad_numbers, 1e9]),
    }
    dashboard = {"bind": pick("bind", ["", "127.0.0.1", master], ["0.0.0.0\n", "x y", '::1"'])}
    jobs = {"jobs_dir": pick("jobs_dir", PATHS, HOSTILE_PATHS)}
    lines = ["[network]", *(f"{k} = {_toml(v)}" for k, v in network.items())]
    for name, table in (
        ("telemetry", telemetry),
        ("history", history),
        ("dashboard", dashboard),
        ("jobs", jobs),
    ):
        lines += ["", f"[{name}]", *(f"{k} = {_toml(v)}" for k, v in table.items())]
    for i in range(draw(st.integers(1, 2))):
        export = pick("export", [PATHS[i]], HOSTILE_PATHS)
        mount = pick("mount", [PATHS[2 + i]], HOSTILE_PATHS)
        lines += ["", "[[shares]]", f"export = {_toml(export)}", f"mount = {_toml(mount)}"]
    for i in range(draw(st.integers(0, 3))):
        name = pick("node_name", [f"node-{i + 1}"], HOSTILE_TEXT)
        lines += ["", "[[nodes]]", f"name = {_toml(name)}", f'mac = "02:00:00:00:00:{i:02x}"']
    return "\n".join(lines) + "\n"


@dataclass
class Tools:
    """The real checkers, found once; a namespace of its own for loading rulesets."""

    nft: str | None = None
    dnsmasq: str | None = None
    systemd_analyze: str | None = None
    bramble: str | None = None
    netns: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @classmethod
    def find(cls, *, netns: bool) -> Tools:
        tools = cls(
            nft=shutil.which("nft"),
            dnsmasq=shutil.which("dnsmasq") or shutil.which("dnsmasq", path="/usr/sbin"),
            systemd_analyze=shutil.which("systemd-analyze"),
            bramble=shutil.which("bramble"),
        )
        if netns and tools.nft and shutil.which("ip"):
            name = f"brfz-{uuid.uuid4().hex[:8]}"
            if subprocess.run(["ip", "netns", "add", name], check=False).returncode == 0:
                tools.netns = name
        return tools

    def close(self) -> None:
        if self.netns is not None:
            subprocess.run(["ip", "netns", "del", self.netns], check=False)
            self.netns = None

    def tick(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def rendered_problems(spec: Spec, tools: Tools, *, units: bool = True) -> list[str]:
    """What is wrong with the config files rendered from SPEC (nothing, if all is well)."""
    files = render(spec, SECRETS)
    problems = _shape_problems(spec, files)
    with tempfile.TemporaryDirectory(prefix="bramble-fuzz-") as tmp:
        root = Path(tmp)
        if tools.netns is not None:
            problems += _nft_problems(spec, files["master/etc/nftables.d/bramble.nft"], root, tools)
        if tools.dnsmasq is not None:
            conf = root / "dnsmasq.conf"
            conf.write_text(files["master/etc/dnsmasq.d/bramble.conf"])
            out = subprocess.run(
                [tools.dnsmasq, "--test", "-C", str(conf)], capture_output=True, text=True
            )
            tools.tick("dnsmasq --test")
            if out.returncode != 0:
                problems.append(f"dnsmasq --test: {out.stderr.strip()}")
        if units and tools.systemd_analyze is not None and tools.bramble is not None:
            problems += _unit_problems(files, root, tools)
    return problems


def _shape_problems(spec: Spec, files: dict[str, str]) -> list[str]:
    """Each file holds the lines its template makes for SPEC, and nothing else."""
    problems = []
    for path, text in files.items():
        if any(not (c.isprintable() or c in "\n\t") for c in text):
            problems.append(f"{path}: a control character")
    net = spec.network
    exports = [
        line
        for line in files["master/etc/exports.d/bramble.exports"].splitlines()
        if line and not line.startswith("#")
    ]
    want = [f"{s.export} {net.subnet}(rw,sync,no_subtree_check,root_squash)" for s in spec.shares]
    if exports != want:
        problems.append(f"exports: {exports!r}, not {want!r}")
    for name, iface in (
        ("10-bramble-cluster.network", net.cluster_interface),
        ("20-bramble-uplink.network", net.uplink_interface),
    ):
        text = files[f"master/etc/systemd/network/{name}"]
        matches = [line for line in text.splitlines() if line.startswith("Name=")]
        if matches != [f"Name={iface}"]:
            problems.append(f"{name}: {matches!r}")
        sections = [line for line in text.splitlines() if line.startswith("[")]
        if len(sections) != len(set(sections)):
            problems.append(f"{name}: a section twice: {sections!r}")
    dnsmasq = files["master/etc/dnsmasq.d/bramble.conf"].splitlines()
    if [line for line in dnsmasq if line.startswith("interface=")] != [
        f"interface={net.cluster_interface}"
    ]:
        problems.append("dnsmasq: interface= is not the cluster interface alone")
    tmpfiles = [
        line
        for line in files["master/etc/tmpfiles.d/bramble.conf"].splitlines()
        if line and not line.startswith("#")
    ]
    if len(tmpfiles) != len(spec.shares) or any(len(line.split()) != 6 for line in tmpfiles):
        problems.append(f"tmpfiles: {tmpfiles!r}")
    return problems


def _nft_problems(spec: Spec, ruleset: str, root: Path, tools: Tools) -> list[str]:
    """Load RULESET for real in the tools' namespace and read back what it accepts."""
    assert tools.netns is not None and tools.nft is not None
    path = root / "bramble.nft"
    path.write_text(ruleset)
    run = ["ip", "netns", "exec", tools.netns, tools.nft]
    check = subprocess.run([*run, "-c", "-f", str(path)], capture_output=True, text=True)
    tools.tick("nft -c")
    if check.returncode != 0:
        return [f"nft -c: {check.stderr.strip()}"]
    subprocess.run([*run, "-f", str(path)], capture_output=True, check=True)
    listed = subprocess.run(
        [*run, "-j", "list", "table", "inet", "bramble"], capture_output=True, text=True
    )
    tools.tick("nft load")
    try:
        return _open_rules(spec, json.loads(listed.stdout)["nftables"])
    finally:
        subprocess.run([*run, "delete", "table", "inet", "bramble"], check=False)


def _open_rules(spec: Spec, items: list[dict[str, Any]]) -> list[str]:
    """The ways the loaded table lets in more than the cluster's services (nothing, ideally)."""
    net = spec.network
    problems = []
    chains = {c["chain"]["name"]: c["chain"] for c in items if "chain" in c}
    for name in ("input", "forward"):
        if chains.get(name, {}).get("policy") != "drop":
            problems.append(f"nft: the {name} chain does not drop by default")
    for item in items:
        rule = item.get("rule")
        if rule is None or rule["chain"] not in ("input", "forward"):
            continue
        exprs = rule["expr"]
        if not any("accept" in e for e in exprs):
            continue
        matches = {
            next(iter(m["match"]["left"].get("meta", {}).values()), ""): m["match"]["right"]
            for m in exprs
            if "match" in m and "meta" in m["match"]["left"]
        }
        text = json.dumps(exprs)
        if '"ct"' in text and "established" in text:
            continue
        iif = matches.get("iifname")
        if rule["chain"] == "forward":
            if (iif, matches.get("oifname")) != (net.cluster_interface, net.uplink_interface):
                problems.append(f"nft: forward accepts {text}")
        elif iif not in ("lo", net.cluster_interface, net.uplink_interface):
            problems.append(f"nft: input accepts from {iif!r}: {text}")
        elif (
            iif == net.uplink_interface
            and not ('"dport"' in text and "22" in text)
            and ("icmp" not in text)
        ):
            problems.append(f"nft: input accepts from the uplink: {text}")
    return problems


def _unit_problems(files: dict[str, str], root: Path, tools: Tools) -> list[str]:
    assert tools.systemd_analyze is not None and tools.bramble is not None
    problems = []
    for role in ("master", "node"):
        units = root / role
        units.mkdir()
        names = []
        for rel, text in files.items():
            if rel.startswith(f"{role}/etc/systemd/system/"):
                name = rel.rsplit("/", 1)[1]
                (units / name).write_text(text.replace(BRAMBLE, tools.bramble))
                names.append(str(units / name))
        out = subprocess.run(
            [tools.systemd_analyze, "verify", *names], capture_output=True, text=True
        )
        tools.tick("systemd-analyze verify")
        if out.returncode != 0:
            problems.append(f"systemd-analyze verify ({role}): {out.stderr.strip()}")
    return problems


# --- datagrams --------------------------------------------------------------------------

HUGE = "1" + "0" * 400
HOSTILE_VALUES: list[str] = [
    HUGE, "-" + HUGE, "1e999", "-1e999", "NaN", "Infinity", "-1", "true", "null", '"x"',
    "[]", "{}", '"\\ud800"', '"' + "a" * 300 + '"', "[" * 600 + "]" * 600, "0.5", "2e9",
    "18446744073709551616", "9223372036854775808", '{"a":' * 50 + "1" + "}" * 50,
]  # fmt: skip
HOSTILE_NAMES = ['"\\ud800"', '"eth\\n0"', '"' + "e" * 40 + '"', '"."', '"a b"', '""']


def datagrams(body: dict[str, Any], count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """COUNT mutations of BODY (a well-formed datagram object) as (how, bytes to sign)."""
    rng = random.Random(seed)
    base = json.dumps(body, separators=(",", ":"))
    keys = list(body)
    for _ in range(count):
        how = rng.choice(("value", "value", "name", "bytes", "cut", "drop", "nest"))
        obj = json.loads(base)
        if how == "value":
            key = rng.choice(keys)
            if isinstance(obj[key], dict) and obj[key]:
                obj[key][rng.choice(list(obj[key]))] = "@@"
            else:
                obj[key] = "@@"
            text = json.dumps(obj, separators=(",", ":"))
            data = text.replace('"@@"', rng.choice(HOSTILE_VALUES)).encode()
        elif how == "name":
            section = rng.choice([k for k in ("net", "disk", "meminfo") if k in obj])
            obj[section] = {"@@": [1, 2] if section == "net" else 1}
            text = json.dumps(obj, separators=(",", ":"))
            data = text.replace('"@@"', rng.choice(HOSTILE_NAMES)).encode()
        elif how == "bytes":
            raw = bytearray(base.encode())
            for _ in range(rng.randint(1, 8)):
                raw[rng.randrange(len(raw))] = rng.randrange(256)
            data = bytes(raw)
        elif how == "cut":
            data = base[: rng.randrange(1, len(base))].encode()
        elif how == "drop":
            obj.pop(rng.choice(keys), None)
            data = json.dumps(obj, separators=(",", ":")).encode()
        else:
            data = ("[" * rng.randint(1, 700) + base).encode()
        yield how, data
