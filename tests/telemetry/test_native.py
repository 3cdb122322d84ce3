"""The compiled agent (agent.c): the same bytes as the Python agent, and how it is built."""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bramble.telemetry import native
from bramble.telemetry.decode import decode
from bramble.telemetry.encode import encode
from bramble.telemetry.sample import Sampler
from bramble.telemetry.wire import MAX_DATAGRAM
from tests.telemetry.conftest import FIXTURES, KEY, proc_tree

pytestmark = pytest.mark.skipif(native.compiler() is None, reason="needs a C compiler (cc)")


@pytest.fixture(scope="module")
def program(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The compiled agent, built into a cache directory of its own."""
    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get(native.CACHE_ENV)
    os.environ[native.CACHE_ENV] = str(cache)
    try:
        yield native.ensure()
    finally:
        if old is None:
            del os.environ[native.CACHE_ENV]
        else:
            os.environ[native.CACHE_ENV] = old


class Case:
    """One machine: a /proc-like tree, sensor files, and the agent's fixed settings."""

    def __init__(
        self,
        proc: Path,
        *,
        freq: str = "/nonexistent",
        temp: str = "/nonexistent",
        key: bytes = KEY,
        key_id: str = "k1",
        node: str = "node-1",
        interval: float = 1.0,
    ) -> None:
        self.proc = proc
        self.freq = freq
        self.temp = temp
        self.key = key
        self.key_id = key_id
        self.node = node
        self.interval = interval

    def python(
        self, samples: int, between: list[dict[str, str]], seq: int, ts: float
    ) -> list[bytes]:
        """The Python agent's datagrams: Sampler and encode, files rewritten between samples."""
        sampler = Sampler(
            proc=str(self.proc), cpufreq_path=self.freq, thermal_path=self.temp,
            disk_path="/nonexistent",
        )  # fmt: skip
        out = []
        try:
            for i in range(samples):
                if i:
                    self.rewrite(between[i - 1])
                out.append(
                    encode(
                        sampler.sample(),
                        node=self.node,
                        boot=sampler.boot,
                        seq=seq + 1 + i,
                        ts=ts,
                        interval=self.interval,
                        key=self.key,
                        key_id=self.key_id,
                    )
                )
        finally:
            sampler.close()
        return out

    def compiled(
        self, program: str, samples: int, between: list[dict[str, str]], seq: int, ts: float
    ) -> list[bytes]:
        """The compiled agent's datagrams (on stdout), files rewritten between samples."""
        read_end, write_end = os.pipe()
        os.write(write_end, f"{self.key_id}:{self.key.hex()}".encode())
        os.close(write_end)
        agent = subprocess.Popen(
            [program, "--node", self.node, "--group", "224.0.0.251", "--port", "1",
             "--interval", repr(self.interval), "--key-fd", str(read_end),
             "--proc", str(self.proc), "--cpufreq", self.freq, "--thermal", self.temp,
             "--disk", "/nonexistent", "--stdout", "--count", str(samples),
             "--seq", str(seq), "--ts", repr(ts)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=[read_end],
        )  # fmt: skip
        os.close(read_end)
        assert agent.stdout is not None
        out = []
        try:
            for i in range(samples):
                if i:  # the next sample is an interval (>= 0.3 s) away: time to change the files
                    self.rewrite(between[i - 1])
                out.append(agent.stdout.readline().rstrip(b"\n"))
            assert agent.wait(timeout=10) == 0, agent.stderr.read() if agent.stderr else ""
        finally:
            agent.kill()
            agent.wait()
        return out

    def rewrite(self, files: dict[str, str]) -> None:
        # In place, as the kernel changes them: the agents keep the files open.
        for name, text in files.items():
            with open(self.proc / name, "r+") as f:
                f.truncate(0)
                f.write(text)


def _fixture_case(machine: str, tmp_path: Path, **settings: object) -> Case:
    proc = proc_tree(machine, tmp_path)
    freq = FIXTURES / machine / "scaling_cur_freq"
    temp = FIXTURES / machine / "thermal_zone0_temp"
    return Case(
        proc,
        freq=str(freq) if freq.exists() else "/nonexistent",
        temp=str(temp) if temp.exists() else "/nonexistent",
        **settings,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("machine", ["x86_64", "raspberrypi"])
@pytest.mark.parametrize(
    ("key", "node"),
    [(KEY, "node-1"), (b"", "n"), (b"\x01" * 64, "pi-é-3"), (bytes(range(200)), 'a"b\\c ☃ 𝄞')],
)
def test_same_bytes_as_the_python_agent_on_captured_files(
    program: str, tmp_path: Path, machine: str, key: bytes, node: str
) -> None:
    case = _fixture_case(machine, tmp_path, key=key, node=node, interval=0.05)
    ts = 1764060000.1235
    assert case.compiled(program, 1, [], 41, ts) == case.python(1, [], 41, ts)


def test_same_bytes_with_an_interface_name_that_is_not_utf8(program: str, tmp_path: Path) -> None:
    case = _fixture_case("raspberrypi", tmp_path)
    dev = case.proc / "net" / "dev"
    dev.write_bytes(dev.read_bytes().replace(b"wlan0", b"wl\xff0"))
    ts = 1764060000.5
    compiled = case.compiled(program, 1, [], 7, ts)
    assert compiled == case.python(1, [], 7, ts)
    assert b'"net":{"eth0":' in compiled[0]


def _random_proc(rng: random.Random, root: Path) -> tuple[Path, list[dict[str, str]]]:
    """A /proc-like tree with random counters, and its changing files: as first written, then
    two later versions."""
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    cores = rng.choice([1, 2, 4, rng.randint(1, 300)])
    names = ["eth0", "wlan0", "veth-é", "br0", "docker0", "tun9", "enp1s0", "lo", "usb0"]
    names += [f"veth{i}" for i in range(rng.choice([0, 0, 30]))]
    ifaces = rng.sample(names, rng.randint(0, len(names)))
    old_meminfo = rng.random() < 0.2
    counters = {
        "cpu": [[rng.randint(0, 10**9) for _ in range(10)] for _ in range(cores + 1)],
        "net": {name: [rng.randint(0, 2**50) for _ in range(16)] for name in ifaces},
    }

    def stat() -> str:
        lines = [
            ("cpu " if i == 0 else f"cpu{i - 1} ") + " ".join(map(str, fields))
            for i, fields in enumerate(counters["cpu"])
        ]
        return "\n".join([*lines, "intr 12 0 3", "ctxt 99", "btime 1764000000", "processes 5"])

    def net_dev() -> str:
        head = "Inter-|   Receive |  Transmit\n face |bytes    packets|bytes    packets\n"
        rows = [f"{name:>6}: " + " ".join(map(str, c)) for name, c in counters["net"].items()]
        return head + "\n".join(rows) + "\n"

    def advance() -> None:
        for fields in counters["cpu"]:
            for k in range(10):
                fields[k] += rng.choice([0, 0, rng.randint(0, 500)])
            if rng.random() < 0.05:  # iowait can go back
                fields[4] = max(0, fields[4] - 50)
        for c in counters["net"].values():
            c[0] += rng.randint(0, 10**6)
            c[8] += rng.randint(0, 10**6)

    mem = {
        "MemTotal": rng.randint(10**5, 10**8),
        "MemFree": rng.randint(0, 10**7),
        "MemAvailable": rng.randint(0, 10**7),
        "Buffers": rng.randint(0, 10**6),
        "Cached": rng.randint(0, 10**6),
        "SwapCached": 7,
        "Active": 5,
        "SwapTotal": rng.randint(0, 10**6),
        "SwapFree": rng.randint(0, 10**6),
    }
    if old_meminfo:
        del mem["MemAvailable"]
    (proc / "meminfo").write_text("".join(f"{k + ':':<16}{v:>8} kB\n" for k, v in mem.items()))
    load = [round(rng.uniform(0, 300), 2) for _ in range(3)]
    (proc / "loadavg").write_text(f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f} 1/100 4242\n")
    (proc / "uptime").write_text(f"{rng.uniform(0, 10**8):.2f} 123.45\n")
    (proc / "stat").write_text(stat())
    (proc / "net" / "dev").write_text(net_dev())
    versions = [{"stat": stat(), "net/dev": net_dev()}]
    for _ in range(2):
        advance()
        versions.append({"stat": stat(), "net/dev": net_dev()})
    return proc, versions


@pytest.mark.parametrize("seed", range(12))
def test_same_bytes_as_the_python_agent_on_random_machines(
    program: str, tmp_path: Path, seed: int
) -> None:
    # Many cores and interfaces (datagrams that must shrink), old kernels' meminfo, counters
    # going back, keys of every length, names that need escaping; three samples, so the CPU
    # figures are differences between readings.
    rng = random.Random(seed)
    proc, versions = _random_proc(rng, tmp_path)
    freq, temp = tmp_path / "freq", tmp_path / "temp"
    freq.write_text(f"{rng.randint(0, 3 * 10**6)}\n")
    temp.write_text(f"{rng.randint(-20000, 110000)}\n")
    case = Case(
        proc,
        freq=str(freq) if rng.random() < 0.8 else "/nonexistent",
        temp=str(temp) if rng.random() < 0.8 else "/nonexistent",
        key=rng.randbytes(rng.choice([0, 1, 31, 32, 63, 64, 65, 100, 1000])),
        key_id=rng.choice(["k1", "cluster.key-2024_a", "x" * 32]),
        node=rng.choice(["node-1", "n" * 63, "ñode-ü", "rack 2/slot 7"]),
        interval=rng.choice([0.3, 0.35]),
    )
    ts = rng.uniform(1.6e9, 1.9e9)
    python = case.python(3, versions[1:], 1000, ts)
    case.rewrite(versions[0])
    compiled = case.compiled(program, 3, versions[1:], 1000, ts)
    assert compiled == python
    for data in compiled:
        assert len(data) <= MAX_DATAGRAM
        decode(data, {case.key_id: case.key}, allow_unsigned=False, source="x")


# ---- building ----


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache directory for this test's builds."""
    directory = tmp_path / "cache"
    monkeypatch.setenv(native.CACHE_ENV, str(directory))
    return directory


def test_built_once_then_found_under_the_source_hash(cache: Path) -> None:
    path = native.ensure()
    built = os.stat(path)
    assert Path(path).parent == cache
    assert Path(path).name == Path(native.binary_path()).name
    assert native.ensure() == path
    assert os.stat(path).st_mtime_ns == built.st_mtime_ns  # not built again
    assert stat.S_IMODE(built.st_mode) == 0o755
    assert sorted(p.name for p in cache.iterdir()) == [".lock", Path(path).name]


def test_agents_starting_together_build_once(cache: Path) -> None:
    code = "from bramble.telemetry import native; print(native.ensure())"
    starts = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    paths = {start.communicate(timeout=120)[0].strip() for start in starts}
    assert len(paths) == 1
    assert [p.name for p in cache.iterdir() if not p.name.startswith(".")] == [
        Path(paths.pop()).name
    ]


def test_no_compiler_says_so(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(native.Unavailable, match="no C compiler"):
        native.ensure()


def test_a_failing_build_says_why_and_leaves_nothing(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'agent.c:1: error: out of cheese' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("CC", str(broken))
    with pytest.raises(native.Unavailable, match=r"could not build the agent: .*out of cheese"):
        native.ensure()
    assert [p.name for p in cache.iterdir()] == [".lock"]


def test_a_program_others_may_change_is_not_run(cache: Path) -> None:
    path = native.ensure()
    os.chmod(path, 0o777)
    with pytest.raises(native.Unavailable, match="may be changed by other users"):
        native.ensure()
    os.chmod(path, 0o755)
    os.chmod(cache, 0o777)
    with pytest.raises(native.Unavailable, match="may be changed by other users"):
        native.ensure()


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bramble", *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **env},
    )  # fmt: skip


def test_prepare_builds_and_prints_the_path(cache: Path) -> None:
    done = _cli("agent", "--prepare", env={})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).parent == cache
    assert os.access(done.stdout.strip(), os.X_OK)


def test_without_a_compiler_auto_runs_the_python_agent_and_compiled_refuses(
    cache: Path, tmp_path: Path, spec_dir: tuple[Path, int]
) -> None:
    spec, port = spec_dir
    env = {"PATH": str(tmp_path), "CC": ""}
    from tests.telemetry.test_agent import _receiver

    with _receiver(port) as rx:
        auto = _cli("agent", "--spec", str(spec), "--count", "2", env=env)
        datagrams = [rx.recvfrom(2048)[0] for _ in range(2)]
    assert auto.returncode == 0, auto.stderr
    assert "no C compiler" in auto.stderr and "running the Python agent" in auto.stderr
    assert all(decode(d, {"k1": KEY}, allow_unsigned=False, source="x").signed for d in datagrams)
    compiled = _cli("agent", "--spec", str(spec), "--count", "2", "--engine", "compiled", env=env)
    assert compiled.returncode == 2
    assert "the compiled agent is not available: no C compiler" in compiled.stderr
    assert "Traceback" not in compiled.stderr


NUMBER_HARNESS = r"""
#define main agent_main
#include AGENT_SOURCE
#undef main
int main(void) {
    char line[128], text[512];
    double x;
    int places;
    while (fgets(line, sizeof line, stdin) && sscanf(line, "%lf %d", &x, &places) == 2) {
        out_t o = {text, text + sizeof text, 0};
        put_num(&o, x, places);
        printf("%.*s\n", (int)(o.at - text), text);
    }
    return 0;
}
"""


def test_numbers_are_written_as_python_writes_them(tmp_path: Path) -> None:
    # repr(round(x, places)), over the ranges the agent sends: fractions, temperatures, load,
    # uptime, wall clock; exact and near ties, negative zero, the smallest numbers.
    source = tmp_path / "numbers.c"
    source.write_text(NUMBER_HARNESS)
    harness = tmp_path / "numbers"
    cc = native.compiler()
    assert cc is not None
    subprocess.run(
        [cc, "-O2", f'-DAGENT_SOURCE="{native.SOURCE}"', "-o", str(harness), str(source), "-lm"],
        check=True,
    )
    rng = random.Random(7)
    cases: list[tuple[float, int]] = []
    for _ in range(100_000):
        places = rng.choice([1, 2, 3, 4])
        kind = rng.random()
        if kind < 0.3:
            x = rng.random()
        elif kind < 0.5:
            x = rng.uniform(-300, 300)
        elif kind < 0.6:
            x, places = rng.uniform(1.6e9, 1.9e9), 3
        elif kind < 0.75:
            tie = 5 * 10 ** -(places + 1)
            x = rng.randint(-(10**6), 10**6) / 10 ** rng.randint(0, 5) + rng.choice([0, tie, -tie])
        elif kind < 0.8:
            x, places = rng.uniform(0, 1e10), 1
        elif kind < 0.9:
            x = rng.choice([0.0, -0.0, 0.125, 2.675, 0.5, 2.5, -4e-05, 5e-324, 0.99995, 1.5e-4])
        else:
            x = rng.uniform(-1e-3, 1e-3)
        cases.append((x, places))
    written = subprocess.run(
        [str(harness)],
        input="".join(f"{x!r} {places}\n" for x, places in cases),
        capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    expected = [repr(round(x, places)) for x, places in cases]
    assert len(written) == len(cases)
    wrong = [(c, w, e) for c, w, e in zip(cases, written, expected, strict=True) if w != e]
    assert not wrong, wrong[:5]


def test_a_damaged_program_falls_back_to_python_or_is_refused(
    cache: Path, spec_dir: tuple[Path, int]
) -> None:
    spec, port = spec_dir
    Path(native.ensure()).write_bytes(b"\0" * 100)  # as after a full disk
    from tests.telemetry.test_agent import _receiver

    with _receiver(port) as rx:
        auto = _cli("agent", "--spec", str(spec), "--count", "2", env={})
        datagrams = [rx.recvfrom(2048)[0] for _ in range(2)]
    assert auto.returncode == 0, auto.stderr
    assert "cannot run" in auto.stderr and "running the Python agent" in auto.stderr
    assert all(decode(d, {"k1": KEY}, allow_unsigned=False, source="x").signed for d in datagrams)
    compiled = _cli("agent", "--spec", str(spec), "--count", "2", "--engine", "compiled", env={})
    assert compiled.returncode == 2
    assert "cannot run" in compiled.stderr and "Traceback" not in compiled.stderr
