"""The compiled agent (agent.c): the same bytes as the Python agent, and how it is built."""

from __future__ import annotations

import os
import random
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from bramble_testing import FIXTURES, KEY, receiver

from bramble import spec
from bramble.spec import MAX_TELEMETRY_KEY as MAX_KEY
from bramble.telemetry import agent, native, wire
from bramble.telemetry.decode import decode, decode_datagram
from bramble.telemetry.wire import MAX_DATAGRAM, ProcsPacket
from tests.telemetry.machines import (
    NUMBER_HARNESS,
    READER_HARNESS,
    Case,
    fixture_case,
    later_processes,
    number_cases,
    odd_process_rounds,
    random_case,
    random_proc,
    random_process_rounds,
    reader_cases,
    wrong_numbers,
    wrong_readings,
)

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


@pytest.mark.parametrize("machine", ["x86_64", "raspberrypi", "raspberrypi4", "raspberrypi5"])
@pytest.mark.parametrize(
    ("key", "node"),
    [(KEY, "node-1"), (b"", "n"), (b"\x01" * 64, "pi-é-3"), (bytes(range(200)), 'a"b\\c ☃ 𝄞')],
)
def test_same_bytes_as_the_python_agent_on_captured_files(
    program: str, tmp_path: Path, machine: str, key: bytes, node: str
) -> None:
    case = fixture_case(machine, tmp_path, key=key, node=node, interval=0.05)
    ts = 1764060000.1235
    assert case.compiled([program], 1, [], 41, ts) == case.python(1, [], 41, ts)


@pytest.mark.parametrize("machine", ["raspberrypi4", "raspberrypi5"])
@pytest.mark.parametrize("flags", ["0\n", "50005\n", "80008\n", "0x5\n", "fffffffff\n", ""])
def test_same_bytes_with_the_firmware_flags_set_clear_or_unreadable(
    program: str, tmp_path: Path, machine: str, flags: str
) -> None:
    # The root filesystem measured is /dev (its use does not move while the test runs).
    case = fixture_case(machine, tmp_path, fs_root="/dev")
    for path in (tmp_path / "sys").rglob("get_throttled"):
        path.write_text(flags)
    ts = 1764060000.25
    compiled = case.compiled([program], 2, [{}], 9, ts)
    assert compiled == case.python(2, [{}], 9, ts)
    model = b"Raspberry Pi 4" if machine == "raspberrypi4" else b"Raspberry Pi 5"
    assert b'"model":"' + model in compiled[0]
    assert b'"fs":{"/":[' in compiled[0] and b'"diskio":[' in compiled[0]
    assert (b'"throttled":' in compiled[0]) == (flags in ("0\n", "50005\n", "80008\n"))


def test_same_bytes_with_odd_board_files(program: str, tmp_path: Path) -> None:
    case = fixture_case("raspberrypi5", tmp_path, fs_root="/dev")
    (case.proc / "device-tree" / "model").write_bytes(b"  Pi \0\0")
    (case.proc / "vmstat").write_text("pswpout 7\npswpin 18446744073709551615\n")
    mounts = (case.proc / "self" / "mountinfo").read_text()
    (case.proc / "self" / "mountinfo").write_text(
        mounts.replace("259:2 / /", "259:2 / / extra:1", 1)  # an optional field
        + "40 22 8:33 / /pts rw - ext4 /dev/sdc1 rw\n"  # /dev/pts: no size, left out
        + "41 22 8:34 / /"
        + "x" * 49
        + " rw - ext4 /dev/sdc2 rw\n"
    )
    ts = 1764060000.25
    compiled = case.compiled([program], 1, [], 9, ts)
    assert compiled == case.python(1, [], 9, ts)
    assert b'"model":"Pi","throttled":0,"swap":[18446744073709551615,7]' in compiled[0]
    assert b'"fs":{"/":[' in compiled[0] and b'"/pts"' not in compiled[0]


def test_no_swap_counters_without_swap_then_again_after_swapon(
    program: str, tmp_path: Path
) -> None:
    # A board without swap (SwapTotal 0 kB) sends no swap, not [0,0] nor stale counters;
    # from the first sample after a swapon it sends them again, then not after a swapoff.
    case = fixture_case("raspberrypi4", tmp_path)
    meminfo = (case.proc / "meminfo").read_text()
    assert "SwapTotal:        102396 kB" in meminfo
    off = meminfo.replace("SwapTotal:        102396 kB", "SwapTotal:             0 kB")
    (case.proc / "meminfo").write_text(off)
    between = [{"meminfo": meminfo}, {"meminfo": off}]
    ts = 1764060000.25
    compiled = case.compiled([program], 3, between, 9, ts)
    (case.proc / "meminfo").write_text(off)
    assert compiled == case.python(3, between, 9, ts)
    assert [b'"swap":' in datagram for datagram in compiled] == [False, True, False]
    assert b'"swap":[5121,9873]' in compiled[1]
    assert b'"SwapTotal":0,' in compiled[0] and b'"throttled":' in compiled[0]


def test_disk_io_from_the_root_devices_own_stat_file_where_sys_has_it(
    program: str, tmp_path: Path
) -> None:
    # /sys/dev/block/179:2/stat: the root partition's counters alone (sectors read third,
    # written seventh), read instead of every device's /proc/diskstats line.
    case = fixture_case("raspberrypi4", tmp_path)
    stat = tmp_path / "sys" / "dev" / "block" / "179:2" / "stat"
    stat.parent.mkdir(parents=True)
    stat.write_text("   44718    10784     1000    97203    61025    71355     2000   651199 0\n")
    files = [
        "   44718    10784     3000    97203    61025    71355     4000   651199 0\n",
        "   44718    10784     3x00    97203    61025    71355     4000   651199 0\n",
    ]
    between = [{"../sys/dev/block/179:2/stat": text} for text in files]
    ts = 1764060000.25
    compiled = case.compiled([program], 3, between, 9, ts)
    stat.write_text("   44718    10784     1000    97203    61025    71355     2000   651199 0\n")
    assert compiled == case.python(3, between, 9, ts)
    assert b'"diskio":[512000,1024000]' in compiled[0]
    assert b'"diskio":[1536000,2048000]' in compiled[1]
    assert b'"diskio":' not in compiled[2]  # not a count: absent, as from /proc/diskstats
    stat.unlink()  # no such file: every device's /proc/diskstats, as before
    compiled = case.compiled([program], 1, [], 9, ts)
    assert compiled == case.python(1, [], 9, ts)
    assert b'"diskio":[%d,%d]' % (5428458 * 512, 2437342 * 512) in compiled[0]


def test_same_bytes_with_an_interface_name_that_is_not_utf8(program: str, tmp_path: Path) -> None:
    case = fixture_case("raspberrypi", tmp_path)
    dev = case.proc / "net" / "dev"
    dev.write_bytes(dev.read_bytes().replace(b"wlan0", b"wl\xff0"))
    ts = 1764060000.5
    compiled = case.compiled([program], 1, [], 7, ts)
    assert compiled == case.python(1, [], 7, ts)
    assert b'"net":{"eth0":' in compiled[0]


@pytest.mark.parametrize("seed", range(12))
def test_same_bytes_as_the_python_agent_on_random_machines(
    program: str, tmp_path: Path, seed: int
) -> None:
    # Three samples, so the CPU figures are differences between readings.
    case, versions, ts = random_case(seed, tmp_path)
    python = case.python(3, versions[1:], 1000, ts)
    case.rewrite(versions[0])
    compiled = case.compiled([program], 3, versions[1:], 1000, ts)
    assert compiled == python
    for data in compiled:
        assert len(data) <= MAX_DATAGRAM
        decode(data, {case.key_id: case.key}, allow_unsigned=False, source="x")


def test_same_bytes_with_numbers_past_32_bits_and_a_clock_past_2038(
    program: str, tmp_path: Path
) -> None:
    # Counters, memory, jiffies and a boot time that a 32-bit long or time_t would cut short.
    case = fixture_case("beyond32", tmp_path, interval=0.05)
    ts = 4102444800.125  # 2100-01-01
    compiled = case.compiled([program], 1, [], 2**40, ts)
    assert compiled == case.python(1, [], 2**40, ts)
    assert b'"boot":2247483648,' in compiled[0] and b'"ts":4102444800.125,' in compiled[0]
    assert b'"eth0":[5000000000000,18446744073709551615]' in compiled[0]


def test_numbers_past_64_bits_are_refused_alike(program: str, tmp_path: Path) -> None:
    case = fixture_case("beyond64", tmp_path, interval=0.05)
    ts = 1764060000.5
    compiled = case.compiled([program], 1, [], 7, ts)
    assert compiled == case.python(1, [], 7, ts)
    packet = decode(compiled[0], {"k1": KEY}, allow_unsigned=False, source="x")
    top = 2**63 - 1
    assert (packet.boot, packet.sample.cpufreq, packet.sample.cputemp) == (0, 0, 0.0)
    assert (packet.sample.cpuusage, packet.sample.cores) == (0.0, ())
    assert packet.sample.loadavg == (0.0, 0.0, 0.0) and packet.sample.uptime == 0.0
    assert packet.sample.meminfo == {
        "MemFree": top, "MemAvailable": top, "Buffers": top, "Cached": 5, "SwapFree": top
    }  # fmt: skip
    assert list(packet.sample.net) == [
        "wlan1", "wlan0", "eth8", "eth7", "eth6", "eth5", "eth4", "eth3"
    ]  # fmt: skip


def test_same_bytes_on_a_machine_with_thousands_of_cores_and_interfaces(
    program: str, tmp_path: Path
) -> None:
    # /proc/stat and /proc/net/dev of several hundred KiB each: both agents read them whole.
    proc, versions = random_proc(random.Random(5), tmp_path, cores=3000, ifaces=3000)
    assert (proc / "stat").stat().st_size > 2**18 and (proc / "net" / "dev").stat().st_size > 2**18
    # Files this large take a while to sample on a busy machine: the samples a second apart.
    case = Case(proc, interval=1.0)
    python = case.python(2, versions[1:], 10, 1764060000.5)
    case.rewrite(versions[0])
    assert case.compiled([program], 2, versions[1:], 10, 1764060000.5) == python


def _defines() -> dict[str, int]:
    text = Path(native.SOURCE).read_text()
    return {m[1]: int(m[2]) for m in re.finditer(r"(?m)^#define (MAX_\w+) (\d+)\b", text)}


def test_the_programs_limits_are_the_specs_and_the_wire_formats() -> None:
    defines = _defines()
    assert defines["MAX_DATAGRAM"] == wire.MAX_DATAGRAM
    assert defines["MAX_CORES"] == wire.MAX_CORES
    assert defines["MAX_IFACES"] == wire.MAX_IFACES
    assert defines["MAX_NAME"] == wire.MAX_NAME
    assert defines["MAX_KEY_ID"] == wire.MAX_KEY_ID
    assert defines["MAX_KEY"] == spec.MAX_TELEMETRY_KEY
    assert defines["MAX_TARGETS"] == spec.MAX_UNICAST
    assert defines["MAX_HOST"] >= spec.MAX_HOST
    assert defines["MAX_INTERVAL"] == spec.MAX_INTERVAL
    # the process datagram's
    assert defines["MAX_PROC_NAME"] == wire.MAX_PROC_NAME
    assert defines["MAX_PROCS_READ"] == wire.MAX_PROCS_READ
    assert defines["MAX_PID"] == wire.MAX_PID
    assert defines["MAX_PROCS_EVERY"] == agent.MAX_PROCS_EVERY
    text = Path(native.SOURCE).read_text()
    assert f"#define TOP_PROCS {wire.TOP_PROCS}\n" in text
    assert "#define MAX_PROCS (2 * TOP_PROCS)\n" in text and wire.MAX_PROCS == 2 * wire.TOP_PROCS
    assert f"#define MAX_PROC_CPU {wire.MAX_PROC_CPU!r}\n" in text
    assert f"#define PROCS_EVERY {agent.PROCS_EVERY}\n" in text
    assert spec.TelemetrySpec().procs_every == agent.PROCS_EVERY


def test_no_unbounded_writer_or_unchecked_parser_in_the_source() -> None:
    # Every text is written by snprintf or the bounded writers (put, put_quoted, put_num);
    # every number is read by the saturating parsers, never atoi, strtol or scanf.
    source = Path(native.SOURCE).read_text()
    writers = "sprintf|vsprintf|strcpy|strcat|stpcpy|gets"
    parsers = "scanf|sscanf|atoi|atol|atoll|strtol|strtoll|strtoul|strtoull"
    assert re.findall(rf"\b({writers}|{parsers})\s*\(", source) == []


def _run(program: str, *args: str, key: str = "k1:5f5f", timeout: float = 10) -> tuple[int, str]:
    """Run the compiled agent on the captured Pi files; its exit status and stderr."""
    read_end, write_end = os.pipe()
    os.write(write_end, key.encode())
    os.close(write_end)
    proc = str(FIXTURES / "raspberrypi")
    done = subprocess.run(
        [program, "--node", "n", "--group", "224.0.0.251", "--port", "1", "--interval", "0.01",
         "--key-fd", str(read_end), "--proc", proc, "--disk", "/nonexistent", "--stdout",
         "--count", "1", *args],
        capture_output=True, text=True, pass_fds=[read_end], timeout=timeout,
    )  # fmt: skip
    os.close(read_end)
    return done.returncode, done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "4294967297"], "--port must be a whole number from 0 to 65535"),
        (["--ttl", "256"], "--ttl must be a whole number from 0 to 255"),
        (["--count", "99999999999999999999"], "--count must be a whole number from 0 to"),
        (["--seq", "-1"], "--seq must be a whole number from 0 to"),
        (["--interval", "3601"], "--interval must be within (0, 3600] seconds"),
        (["--interval", "1x"], "--interval must be within (0, 3600] seconds"),
        (["--ts", "inf"], "--ts must be a finite number"),
        (["--unicast", "h:99999"], "--unicast port must be a whole number from 0 to 65535"),
        (["--proc", "/" * 5000], "--proc path is too long"),
    ],
)
def test_arguments_out_of_range_are_refused_not_wrapped(
    program: str, args: list[str], message: str
) -> None:
    status, errors = _run(program, *args)
    assert status == 2 and message in errors, errors


def test_an_interval_below_a_microsecond_still_repeats(program: str) -> None:
    # A positive interval the timer cannot hold is one microsecond, not a timer that fires once.
    status, errors = _run(program, "--interval", "1e-9", "--count", "3")
    assert status == 0, errors


def test_a_key_too_long_for_the_program_is_refused_not_cut_short(program: str) -> None:
    at_limit = "k1:" + "ab" * MAX_KEY
    assert _run(program, key=at_limit) == (0, "")
    status, errors = _run(program, key=at_limit + "ab")
    assert status == 2 and f"longer than {MAX_KEY} bytes" in errors, errors


def test_a_node_name_of_63_wide_characters_is_sent_as_python_sends_it(
    program: str, tmp_path: Path
) -> None:
    # 63 characters of 4 bytes each (252 bytes, 756 once escaped): the Python agent's limit
    # counts characters, and so does the compiled one's.
    case = fixture_case("raspberrypi", tmp_path, node="𝄞" * 63, interval=0.05)
    compiled = case.compiled([program], 1, [], 1, 1764060000.5)
    assert compiled == case.python(1, [], 1, 1764060000.5)
    too_long = "𝄞" * 64
    status, errors = _run(program, "--node", too_long)
    assert status == 2 and "node name must be 1 to 63 printable characters" in errors


# ---- the self-test ----

VECTORS = [
    "sha256 FIPS 180-4 'abc'",
    "sha256 FIPS 180-4 448-bit two-block message",
    "sha256 FIPS 180-4 one million 'a'",
    *(f"hmac-sha256 RFC 4231 test case {n}" for n in range(1, 8)),
]


def test_selftest_passes_every_published_vector(program: str) -> None:
    done = subprocess.run([program, "--selftest"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"{name}: ok" for name in VECTORS]


@pytest.mark.parametrize(
    ("wrong", "right", "failing"),
    [
        # One round constant off: every digest is wrong, and every HMAC with it.
        ("0x428a2f98", "0x428a2f99", VECTORS),
        # The inner pad off: SHA-256 is right, every HMAC wrong.
        ("^ 0x36", "^ 0x37", VECTORS[3:]),
    ],
)
def test_selftest_fails_when_the_code_is_wrong(
    tmp_path: Path, wrong: str, right: str, failing: list[str]
) -> None:
    source = Path(native.SOURCE).read_text()
    assert source.count(wrong) == 1
    mutant = tmp_path / "agent.c"
    mutant.write_text(source.replace(wrong, right))
    built = tmp_path / "mutant"
    native.compile_agent(str(built), source=str(mutant))
    done = subprocess.run([str(built), "--selftest"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == VECTORS
    for name, line in zip(VECTORS, lines, strict=True):
        if name in failing:
            assert line.startswith(f"{name}: FAILED (got "), line
        else:
            assert line == f"{name}: ok"


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

    with receiver(port) as rx:
        auto = _cli("agent", "--spec", str(spec), "--count", "2", env=env)
        datagrams = [rx.recvfrom(2048)[0] for _ in range(2)]
    assert auto.returncode == 0, auto.stderr
    assert "no C compiler" in auto.stderr and "running the Python agent" in auto.stderr
    assert all(decode(d, {"k1": KEY}, allow_unsigned=False, source="x").signed for d in datagrams)
    compiled = _cli("agent", "--spec", str(spec), "--count", "2", "--engine", "compiled", env=env)
    assert compiled.returncode == 2
    assert "the compiled agent is not available: no C compiler" in compiled.stderr
    assert "Traceback" not in compiled.stderr


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
    assert not wrong_numbers([str(harness)], number_cases(100_000))


def test_numbers_are_read_as_python_reads_them(tmp_path: Path) -> None:
    # parse_float as float() and parse_int as int() read a /proc word, within the 64 bits
    # the compiled agent keeps: kernel forms, underscores, signs, exponents, and nonsense.
    source = tmp_path / "readers.c"
    source.write_text(READER_HARNESS)
    harness = tmp_path / "readers"
    cc = native.compiler()
    assert cc is not None
    subprocess.run(
        [cc, "-O2", f'-DAGENT_SOURCE="{native.SOURCE}"', "-o", str(harness), str(source), "-lm"],
        check=True,
    )
    assert not wrong_readings([str(harness)], reader_cases(30_000))


def test_a_damaged_program_falls_back_to_python_or_is_refused(
    cache: Path, spec_dir: tuple[Path, int]
) -> None:
    spec, port = spec_dir
    Path(native.ensure()).write_bytes(b"\0" * 100)  # as after a full disk

    with receiver(port) as rx:
        auto = _cli("agent", "--spec", str(spec), "--count", "2", env={})
        datagrams = [rx.recvfrom(2048)[0] for _ in range(2)]
    assert auto.returncode == 0, auto.stderr
    assert "cannot run" in auto.stderr and "running the Python agent" in auto.stderr
    assert all(decode(d, {"k1": KEY}, allow_unsigned=False, source="x").signed for d in datagrams)
    compiled = _cli("agent", "--spec", str(spec), "--count", "2", "--engine", "compiled", env={})
    assert compiled.returncode == 2
    assert "cannot run" in compiled.stderr and "Traceback" not in compiled.stderr


PAGE_SIZES = {"x86_64": 4096, "raspberrypi4": 4096, "raspberrypi5": 16384}  # a Pi 5: 16 KiB


@pytest.mark.parametrize("machine", list(PAGE_SIZES))
def test_same_process_datagrams_as_the_python_agent_on_captured_files(
    program: str, tmp_path: Path, machine: str
) -> None:
    # Two readings of every process (and of /proc/stat), an interval apart: CPU shares.
    def case(where: str) -> Case:
        return fixture_case(machine, tmp_path / where, procs_every=1,
                            page_size=PAGE_SIZES[machine], interval=0.6)  # fmt: skip

    ts = 1764060000.25
    compiled = case("c").compiled([program], 2, [later_processes(machine)], 9, ts)
    python = case("py").python(2, [later_processes(machine)], 9, ts)
    assert compiled == python
    assert len(compiled) == 3 and compiled[2].startswith(b'{"v":1,"node":"node-1","boot":')
    packet = decode_datagram(compiled[2], {"k1": KEY}, allow_unsigned=False, source="x")
    assert isinstance(packet, ProcsPacket) and packet.seq == 12
    top = {
        "raspberrypi4": ("ffmpeg", 2540, 282.2, 62427 * 4096),
        "raspberrypi5": ("stress-ng-cpu", 5120, 99.5, 193 * 16384),
        "x86_64": ("cc1", 9410, 95.9, 52042 * 4096),
    }[machine]
    assert tuple(packet.procs[0]) == top


@pytest.mark.parametrize("every", [1, 2, 3])
def test_process_datagrams_every_n_intervals_with_odd_processes(
    program: str, tmp_path: Path, every: int
) -> None:
    # Hostile names (spaces, parentheses, quotes, newlines, bytes that are not UTF-8, control
    # characters, a four-byte character cut at 15 bytes), a process that ends, one that
    # starts, a pid used again, counters past 64 bits and lines that are not stat lines.
    def case(where: str) -> tuple[Case, list[dict[str, str]]]:
        built = fixture_case("raspberrypi4", tmp_path / where, procs_every=every, interval=0.6)
        return built, odd_process_rounds(built.proc, 5)

    ts = 1764060000.5
    compiled_case, rounds = case("c")
    compiled = compiled_case.compiled([program], 6, rounds, 100, ts)
    python_case, rounds = case("py")
    assert compiled == python_case.python(6, rounds, 100, ts)
    procs = [d for d in compiled if b'"procs":' in d]
    assert len(procs) == 5 // every
    for data in procs:
        assert len(data) <= MAX_DATAGRAM
        packet = decode_datagram(data, {"k1": KEY}, allow_unsigned=False, source="x")
        assert isinstance(packet, ProcsPacket) and 0 < len(packet.procs) <= wire.MAX_PROCS
    if every == 1:  # each odd name among the busiest once, as both agents write it
        packets = [decode_datagram(d, {"k1": KEY}, allow_unsigned=False, source="x") for d in procs]
        names = {p.name for packet in packets for p in packet.procs}  # type: ignore[union-attr]
        assert {
            'a) (b "c"', "new?line", "bad??name", "tab?\\?", "ñandú-☃", "?" * 15, "x?y",
            "a-name-of-forty", "nul?byte", "", "éééééé", "ééééééé",
        } <= names  # fmt: skip


@pytest.mark.parametrize("seed", range(6))
def test_same_process_datagrams_on_random_processes(
    program: str, tmp_path: Path, seed: int
) -> None:
    def case(where: str) -> tuple[Case, list[dict[str, str]]]:
        page = random.Random(seed).choice([4096, 16384, 65536])
        built = fixture_case(
            "raspberrypi5", tmp_path / where, procs_every=1, interval=0.6, page_size=page
        )
        return built, random_process_rounds(random.Random(seed), built.proc, 3)

    compiled_case, rounds = case("c")
    compiled = compiled_case.compiled([program], 4, rounds, 1, 1764060000.5)
    python_case, rounds = case("py")
    assert compiled == python_case.python(4, rounds, 1, 1764060000.5)
    assert sum(b'"procs":[[' in d for d in compiled) == 3
