"""Machines to run both agents on, and each agent's datagrams there.

A machine is a /proc-like tree (captured from a real board, or made up at random), sensor
files and the agent's fixed settings. `Case.python` runs the Python sampler and encoder on
it, `Case.compiled` a build of agent.c (the native one, a sanitized one, or a cross-built
one under qemu): the tests compare the two byte for byte.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path

from bramble_testing import FIXTURES, KEY, proc_tree

from bramble.telemetry.encode import encode, encode_procs
from bramble.telemetry.sample import ProcReader, Sampler


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
        sys: str = "/nonexistent",
        fs_root: str = "/nonexistent",
        procs_every: int = 0,
        page_size: int = 4096,
    ) -> None:
        self.proc = proc
        self.procs_every = procs_every
        self.page_size = page_size
        self.sys = sys
        self.fs_root = fs_root
        self.freq = freq
        self.temp = temp
        self.key = key
        self.key_id = key_id
        self.node = node
        self.interval = interval

    def python(
        self, samples: int, between: list[dict[str, str]], seq: int, ts: float
    ) -> list[bytes]:
        """The Python agent's datagrams: Sampler and encode, files rewritten between samples;
        with `procs_every`, the process datagrams too, as the agent's loop sends them."""
        sampler = Sampler(
            proc=str(self.proc), cpufreq_path=self.freq, thermal_path=self.temp,
            disk_path="/nonexistent", sysfs=self.sys, fs_root=self.fs_root,
        )  # fmt: skip
        reader = ProcReader(str(self.proc), self.page_size) if self.procs_every else None
        out = []
        try:
            for i in range(samples):
                if i:
                    self.rewrite(between[i - 1])
                seq += 1
                out.append(
                    encode(
                        sampler.sample(),
                        node=self.node,
                        boot=sampler.boot,
                        seq=seq,
                        ts=ts,
                        interval=self.interval,
                        key=self.key,
                        key_id=self.key_id,
                    )
                )
                if reader is not None and i % self.procs_every == 0:
                    procs = reader.read(sampler.jiffies, sampler.cores)
                    if procs is not None:
                        seq += 1
                        out.append(
                            encode_procs(
                                procs,
                                node=self.node,
                                boot=sampler.boot,
                                seq=seq,
                                ts=ts,
                                key=self.key,
                                key_id=self.key_id,
                            )
                        )
        finally:
            sampler.close()
            if reader is not None:
                reader.close()
        return out

    def compiled(
        self,
        program: Sequence[str],
        samples: int,
        between: list[dict[str, str]],
        seq: int,
        ts: float,
        env: dict[str, str] | None = None,
    ) -> list[bytes]:
        """The compiled agent's datagrams (on stdout), files rewritten between samples.

        PROGRAM is the command that runs it (the path, or an emulator and the path). It must
        exit 0 and write nothing on stderr: a sanitizer's report fails the comparison.
        """
        read_end, write_end = os.pipe()
        os.write(write_end, f"{self.key_id}:{self.key.hex()}".encode())
        os.close(write_end)
        agent = subprocess.Popen(
            [*program, "--node", self.node, "--group", "224.0.0.251", "--port", "1",
             "--interval", repr(self.interval), "--key-fd", str(read_end),
             "--proc", str(self.proc), "--cpufreq", self.freq, "--thermal", self.temp,
             "--sys", self.sys, "--fs-root", self.fs_root,
             "--disk", "/nonexistent", "--stdout", "--count", str(samples),
             "--seq", str(seq), "--ts", repr(ts), "--procs-every", str(self.procs_every),
             "--page-size", str(self.page_size)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=[read_end],
            env=None if env is None else {**os.environ, **env},
        )  # fmt: skip
        os.close(read_end)
        assert agent.stdout is not None and agent.stderr is not None
        out = []
        try:
            for i in range(samples):
                if i:  # the next sample is an interval (>= 0.6 s) away: time to change the files
                    self.rewrite(between[i - 1])
                out.append(agent.stdout.readline().rstrip(b"\n"))
                if self.procs_every and i and i % self.procs_every == 0:  # and the processes
                    out.append(agent.stdout.readline().rstrip(b"\n"))
            status = agent.wait(timeout=30)
            errors = agent.stderr.read().decode(errors="replace")
            assert status == 0 and not errors, f"exit status {status}: {errors}"
        finally:
            agent.kill()
            agent.wait()
            agent.stdout.close()
            agent.stderr.close()
        return out

    def rewrite(self, files: dict[str, str]) -> None:
        # In place, as the kernel changes them: the agents keep the files open. A file that
        # is not there yet is a new process's.
        for name, text in files.items():
            path = self.proc / name
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"")
            with open(path, "r+b") as f:
                f.truncate(0)
                f.write(text.encode("utf-8", "surrogateescape"))


def later_processes(machine: str) -> dict[str, str]:
    """MACHINE's processes as read the next time (and /proc/stat then), for `Case.rewrite`:
    each process's `processes/PID/stat.later`, with `processes/stat.later`."""
    files = {
        f"{path.parent.name}/stat": path.read_bytes().decode("utf-8", "surrogateescape")
        for path in sorted((FIXTURES / machine).glob("processes/*/stat.later"))
    }
    files["stat"] = (FIXTURES / machine / "processes" / "stat.later").read_text()
    return files


def fixture_case(machine: str, tmp_path: Path, **settings: object) -> Case:
    """A Case on the captured (or written) files of tests/telemetry/fixtures/MACHINE."""
    proc = proc_tree(machine, tmp_path)
    freq = FIXTURES / machine / "scaling_cur_freq"
    temp = FIXTURES / machine / "thermal_zone0_temp"
    sys = tmp_path / "sys"
    settings.setdefault("sys", str(sys) if sys.exists() else "/nonexistent")
    return Case(
        proc,
        freq=str(freq) if freq.exists() else "/nonexistent",
        temp=str(temp) if temp.exists() else "/nonexistent",
        **settings,  # type: ignore[arg-type]
    )


def random_proc(
    rng: random.Random, root: Path, *, cores: int | None = None, ifaces: int | None = None
) -> tuple[Path, list[dict[str, str]]]:
    """A /proc-like tree with random counters, and its changing files: as first written, then
    two later versions. CORES and IFACES, when given, fix how many of each it has."""
    proc = root / "proc"
    (proc / "net").mkdir(parents=True)
    if cores is None:
        cores = rng.choice([1, 2, 4, rng.randint(1, 300)])
    names = ["eth0", "wlan0", "veth-é", "br0", "docker0", "tun9", "enp1s0", "lo", "usb0"]
    names += [f"veth{i}" for i in range(rng.choice([0, 0, 30]) if ifaces is None else ifaces)]
    chosen = rng.sample(names, rng.randint(0, len(names)) if ifaces is None else len(names))
    old_meminfo = rng.random() < 0.2
    counters = {
        "cpu": [[rng.randint(0, 10**9) for _ in range(10)] for _ in range(cores + 1)],
        "net": {name: [rng.randint(0, 2**50) for _ in range(16)] for name in chosen},
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


def random_case(seed: int, root: Path) -> tuple[Case, list[dict[str, str]], float]:
    """Machine SEED of the random ones: many cores and interfaces (datagrams that must
    shrink), old kernels' meminfo, counters going back, keys of every length, names that
    need escaping. Returns the case, its files' versions and the wall clock to send."""
    rng = random.Random(seed)
    proc, versions = random_proc(rng, root)
    freq, temp = root / "freq", root / "temp"
    freq.write_text(f"{rng.randint(0, 3 * 10**6)}\n")
    temp.write_text(f"{rng.randint(-20000, 110000)}\n")
    case = Case(
        proc,
        freq=str(freq) if rng.random() < 0.8 else "/nonexistent",
        temp=str(temp) if rng.random() < 0.8 else "/nonexistent",
        key=rng.randbytes(rng.choice([0, 1, 31, 32, 63, 64, 65, 100, 1000])),
        key_id=rng.choice(["k1", "cluster.key-2024_a", "x" * 32]),
        node=rng.choice(["node-1", "n" * 63, "ñode-ü", "rack 2/slot 7"]),
        interval=rng.choice([0.6, 0.65]),
    )
    return case, versions, rng.uniform(1.6e9, 1.9e9)


# A program that writes numbers with agent.c's put_num, one per line of "x places" read.
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


def number_cases(count: int, seed: int = 7) -> list[tuple[float, int]]:
    """(x, places) over the ranges the agent sends: fractions, temperatures, load, uptime,
    wall clock; exact and near ties, negative zero, the smallest numbers."""
    rng = random.Random(seed)
    cases: list[tuple[float, int]] = []
    for _ in range(count):
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
    return cases


def wrong_numbers(
    harness: Sequence[str], cases: list[tuple[float, int]], env: dict[str, str] | None = None
) -> list[tuple[tuple[float, int], str, str]]:
    """The cases the number HARNESS (a command) writes otherwise than repr(round(x, places))."""
    done = subprocess.run(
        [*harness],
        input="".join(f"{x!r} {places}\n" for x, places in cases),
        capture_output=True, text=True, check=True, timeout=120,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip
    assert not done.stderr, done.stderr
    written = done.stdout.splitlines()
    assert len(written) == len(cases)
    expected = [repr(round(x, places)) for x, places in cases]
    return [(c, w, e) for c, w, e in zip(cases, written, expected, strict=True) if w != e][:5]


# A program that reads words with agent.c's parse_float ("f" lines) and parse_int ("i").
READER_HARNESS = r"""
#define main agent_main
#include AGENT_SOURCE
#undef main
int main(void) {
    char line[256];
    while (fgets(line, sizeof line, stdin)) {
        size_t n = strcspn(line, "\n");
        int ok;
        if (line[0] == 'f') {
            double x = parse_float(line + 1, line + n, &ok);
            if (ok) printf("%.17g\n", x);
            else puts("bad");
        } else {
            int64_t x = parse_int(line + 1, line + n, &ok);
            if (ok) printf("%lld\n", (long long)x);
            else puts("bad");
        }
    }
    return 0;
}
"""


ODD_WORDS = [
    "nan", "inf", "-Infinity", "1e400", "1e-400", "0x10", ".", "1e", "+.5", "5.", "1_000.5",
    "1__0", "_1", "1_", "1._5", "1e1_0", "-0", "0" * 30 + "1.5", "9" * 17, "1" * 16 + ".5",
    " 7 ", "+-1", "0" * 156 + "1.5", "0" * 157 + "1.5",
]  # fmt: skip


def _token(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:  # as the kernel writes them
        return f"{rng.uniform(0, 10 ** rng.randint(0, 12)):.{rng.randint(0, 4)}f}"
    if kind < 0.4:
        return str(rng.choice([2**63 - 1, 2**63, -(2**63), 2**64 - 1, 2**64, 10**30, 0]))
    if kind < 0.5:
        return rng.choice(ODD_WORDS)
    return "".join(rng.choice("0123456789._eE+- x") for _ in range(rng.randint(1, 12)))


def _python_reads(kind: str, token: str) -> str:
    """What Python's float() ('f') or int() ('i') reads in TOKEN, as the harness writes it."""
    if kind == "f" and len(token.strip()) >= 160:  # the compiled agent's longest decimal word
        return "bad"
    try:
        value = float(token.encode()) if kind == "f" else int(token.encode())
    except ValueError:
        return "bad"
    if kind == "f":
        return f"{value:.17g}" if value - value == 0 else "bad"
    return str(value) if -(2**63) < value < 2**63 else "bad"


def reader_cases(count: int, seed: int = 3) -> list[tuple[str, str]]:
    """(kind, word): words as the kernel writes them, at and past 64 bits, and nonsense."""
    rng = random.Random(seed)
    return [(rng.choice("fi"), _token(rng)) for _ in range(count)]


def wrong_readings(
    harness: Sequence[str], cases: list[tuple[str, str]], env: dict[str, str] | None = None
) -> list[tuple[tuple[str, str], str, str]]:
    """The cases the reader HARNESS (a command) reads otherwise than Python."""
    done = subprocess.run(
        [*harness], input="".join(f"{kind}{token}\n" for kind, token in cases),
        capture_output=True, text=True, check=True, timeout=120,
        env=None if env is None else {**os.environ, **env},
    )  # fmt: skip
    assert not done.stderr, done.stderr
    read = done.stdout.splitlines()
    expected = [_python_reads(kind, token) for kind, token in cases]
    return [(c, r, e) for c, r, e in zip(cases, read, expected, strict=True) if r != e][:5]


def _stat_line(pid: int, name: bytes, ticks: tuple[int, int], start: int, pages: int) -> bytes:
    fields = ["S", 1, pid, pid, 0, -1, 4194560, 120, 0, 0, 0, ticks[0], ticks[1], 0, 0, 20, 0, 1,
              0, start, 12_345_678, pages, 18446744073709551615, 1, 1, 0, 0, 0]  # fmt: skip
    return b"%d (%s) %s\n" % (pid, name, " ".join(map(str, fields)).encode())


ODD_NAMES = {
    4001: b'a) (b "c"',
    4002: b"new\nline",
    4003: b"bad\xff\xfename",
    4004: b"tab\t\\\x7f",
    4005: "ñandú-☃".encode(),
    4006: "😀😀😀😀".encode(),  # 16 bytes: cut at 15, in the middle of the last one
    4007: b"x\xc2\x85y",  # U+0085, a C1 control
    4008: b"a-name-of-forty-characters-is-cut-short",
    4009: b"nul\x00byte",
    4010: b"",
    4018: "éééééé".encode(),
    4019: "ééééééé".encode(),
}


def odd_process_rounds(proc: Path, rounds: int) -> list[dict[str, str]]:
    """Processes no real /proc would show together, written into PROC, and the files of each
    of ROUNDS later readings (for `Case.rewrite`): /proc/stat 60 ticks a core later, each
    process busier. Names that need care (see ODD_NAMES), a process that ends in the second
    round and one that starts, a pid used again by a new process in the third, counters at
    and past 64 bits, a line that is not a stat line, entries that are not pids."""
    stat_text = (proc / "stat").read_text()

    def files(round_: int) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for k, (pid, name) in enumerate(ODD_NAMES.items()):
            # three of them the busiest in each round, in turn: each is sent at least once
            used = sum(1000 + k if k // 3 == (r - 1) % 4 else k for r in range(1, round_ + 1))
            out[f"{pid}/stat"] = _stat_line(pid, name, (9000 + used, 100), 50, pid % 5)
        out["4011/stat"] = (
            b"" if round_ >= 2 else _stat_line(4011, b"ends", (5, 5 + 300 * round_), 9, 1)
        )
        if round_ >= 2:
            out["4012/stat"] = _stat_line(4012, b"starts", (40, 2), 90_000, 10)
        reused = round_ >= 3
        out["4013/stat"] = _stat_line(
            4013,
            b"reused" if reused else b"first",
            (3 if reused else 900 + round_ * 30, 0),
            95_000 if reused else 70,
            3,
        )
        out["4014/stat"] = _stat_line(4014, b"past64", (2**64, 1), 1, 1)
        top = 2**63 - 1
        out["4015/stat"] = _stat_line(4015, b"spins", (top - 10**6 + round_ * 1000, top), 2, 1)
        out["4016/stat"] = b"not a stat line\n"
        out["4017/stat"] = _stat_line(4017, b"huge", (1, round_), 3, top)
        for entry in ("0123", "99999999", "self"):
            out[f"{entry}/stat"] = _stat_line(7, b"not-a-pid", (10**6 * round_, 0), 1, 99)
        lines = []
        for line in stat_text.split("\n"):
            words = line.split()
            if words and words[0].startswith("cpu"):
                share = 240 if words[0] == "cpu" else 60
                numbers = [int(w) for w in words[1:]]
                numbers[0] += share * round_
                line = " ".join([words[0], *map(str, numbers)])
            lines.append(line)
        out["stat"] = "\n".join(lines).encode()
        return out

    for name, data in files(0).items():
        if data or name == "stat":
            (proc / name).parent.mkdir(exist_ok=True)
            (proc / name).write_bytes(data)
    return [
        {name: data.decode("utf-8", "surrogateescape") for name, data in files(r).items()}
        for r in range(1, rounds + 1)
    ]


def _random_name(rng: random.Random) -> bytes:
    pieces = [b"(", b")", b") (", b" ", b"\n", b"\t", b"\0", b'"', b"\\", b"\x7f", b"\xff",
              b"\xc3", b"\xa9", "é".encode(), "☃".encode(), "😀".encode(), b"\xed\xa0\x80",
              b"\xc0\xaf", b"\xc2\x85", b"kworker/0:1", b"a", b"Z9"]  # fmt: skip
    return b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))


def _random_count(rng: random.Random) -> str:
    return str(rng.choice([0, 1, rng.randint(0, 10**6), rng.randint(0, 2**40), 2**63 - 1,
                           2**63, 2**64 - 1, 2**64, rng.randint(0, 2**70)]))  # fmt: skip


def random_process_rounds(
    rng: random.Random, proc: Path, rounds: int, processes: int = 40
) -> list[dict[str, str]]:
    """PROCESSES made-up processes in PROC (names of random bytes, counters anywhere from 0
    to past 64 bits, now and then a line cut short or an odd word) and the files of ROUNDS
    later readings, as `odd_process_rounds` gives them."""
    pids = rng.sample(range(1, 2**22 + 1), processes)
    names = {pid: _random_name(rng) for pid in pids}
    ticks = {pid: [rng.randint(0, 10**7), rng.randint(0, 10**6)] for pid in pids}
    stat_text = (proc / "stat").read_text()

    def line(pid: int) -> bytes:
        if rng.random() < 0.05:
            return rng.choice([b"", b"%d (x" % pid, b"%d (x) S 1 2" % pid])
        start = rng.choice([7, 7, 7, rng.randint(0, 10**6)])
        fields = ["S", 1, pid, pid, 0, -1, 0, 0, 0, 0, 0, *ticks[pid], 0, 0, 20, 0, 1, 0,
                  start, 0, _random_count(rng), 0]  # fmt: skip
        if rng.random() < 0.05:  # not a count as the kernel writes one (an Arabic-Indic 1)
            fields[rng.choice([11, 12, 19, 21])] = rng.choice(["-1", "1e3", "0x10", "\u0661"])
        if rng.random() < 0.05:
            fields[11] = _random_count(rng)
        text = b" ".join(str(f).encode() for f in fields)
        return b"%d (%s) %s\n" % (pid, names[pid], text)

    def files(round_: int) -> dict[str, bytes]:
        for pid in pids:
            ticks[pid][0] += rng.choice([0, 0, rng.randint(0, 500)])
            ticks[pid][1] += rng.choice([0, rng.randint(0, 50)])
        out = {f"{pid}/stat": line(pid) for pid in pids}
        words = stat_text.split("\n")
        for i, text in enumerate(words):
            parts = text.split()
            if parts and parts[0].startswith("cpu"):
                numbers = [int(w) for w in parts[1:]]
                numbers[0] += rng.randint(0, 400) * round_
                words[i] = " ".join([parts[0], *map(str, numbers)])
        out["stat"] = "\n".join(words).encode()
        return out

    for name, data in files(0).items():
        (proc / name).parent.mkdir(exist_ok=True)
        (proc / name).write_bytes(data)
    return [
        {name: data.decode("utf-8", "surrogateescape") for name, data in files(r).items()}
        for r in range(1, rounds + 1)
    ]
