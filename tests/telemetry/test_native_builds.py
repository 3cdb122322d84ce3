"""agent.c built otherwise than for this machine, each run on a representative set of the
machines the native build is compared on: with AddressSanitizer and UndefinedBehaviorSanitizer
(any report fails), and for the boards' ARM (64-bit aarch64, 32-bit armhf), cross-compiled
and run under qemu-user. Each build sends the Python agent's bytes and passes its self-test.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bramble_testing import KEY

from bramble.telemetry import native
from bramble.telemetry.decode import decode
from bramble.telemetry.wire import MAX_DATAGRAM
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
from tests.telemetry.test_native import PAGE_SIZES, VECTORS

# Warnings are errors here: a conversion that loses bits on a 32-bit board is a bug.
STRICT = ("-Wextra", "-Wconversion", "-Wsign-conversion", "-Wshadow", "-Werror")
SANITIZE = ("-fsanitize=address,undefined,float-cast-overflow", "-fno-sanitize-recover=all", "-g")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "print_stacktrace=1",
}


@dataclass(frozen=True)
class Target:
    """How to build agent.c for one kind of machine, and how to run the result here."""

    cc: str | None  # None: this machine's compiler
    flags: tuple[str, ...]
    emulator: tuple[str, ...] = ()  # qemu-user and the processor it emulates
    sysroot: str | None = None  # the target's C library, which qemu loads the program with
    env: dict[str, str] = field(default_factory=dict)
    packages: str = ""  # the Debian packages that bring the compiler and the emulator


TARGETS = {
    "sanitized": Target(None, SANITIZE, env=SANITIZER_ENV, packages="gcc"),
    # The oldest cores of the boards each runs on: Raspberry Pi 3 and Zero 2 (Cortex-A53),
    # Raspberry Pi 2 (Cortex-A7). (Debian's armhf is ARMv7: the Pi 1 and Zero are ARMv6.)
    "aarch64": Target(
        "aarch64-linux-gnu-gcc", (), ("qemu-aarch64", "-cpu", "cortex-a53"),
        "/usr/aarch64-linux-gnu",
        packages="gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user",
    ),
    "armhf": Target(
        "arm-linux-gnueabihf-gcc", (), ("qemu-arm", "-cpu", "cortex-a7"),
        "/usr/arm-linux-gnueabihf",
        packages="gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Build:
    """A built program: the command that runs it here, and the environment it needs."""

    name: str
    path: str
    cc: str
    command: list[str]
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args], input=stdin, capture_output=True, text=True, timeout=120,
            env={**os.environ, **self.env},
        )  # fmt: skip


def _missing(target: Target) -> str | None:
    """Why TARGET cannot be built and run here, or None."""
    needs = [target.cc or native.compiler() or "cc", *target.emulator[:1]]
    absent = [tool for tool in needs if tool and not shutil.which(tool)]
    if target.sysroot and not os.path.isdir(os.path.join(target.sysroot, "lib")):
        absent.append(target.sysroot)
    if absent:
        return f"needs {', '.join(absent)} (Debian: {target.packages})"
    return None


@pytest.fixture(scope="module", params=list(TARGETS))
def build(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Build:
    """agent.c built for one target; skipped, saying what to install, where it cannot be."""
    name: str = request.param
    target = TARGETS[name]
    reason = _missing(target)
    if reason:
        pytest.skip(f"{name} build: {reason}")
    cc = target.cc or native.compiler()
    assert cc is not None
    path = str(tmp_path_factory.mktemp(name) / "bramble-agent")
    try:
        native.compile_agent(path, cc=cc, extra=(*target.flags, *STRICT))
    except native.Unavailable as exc:
        if name == "sanitized" and "sanitize" in str(exc):  # a compiler without the runtimes
            pytest.skip(f"{name} build: {exc}")
        raise
    emulator = [*target.emulator, "-L", target.sysroot] if target.sysroot else []
    return Build(name, path, cc, [*emulator, path], target.env)


def test_selftest(build: Build) -> None:
    done = build.run("--selftest")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [f"{name}: ok" for name in VECTORS]
    assert not done.stderr


@pytest.mark.parametrize("machine", ["x86_64", "raspberrypi", "raspberrypi4", "raspberrypi5"])
@pytest.mark.parametrize(("key", "node"), [(KEY, "node-1"), (bytes(range(200)), 'a"b\\c ☃ 𝄞')])
def test_same_bytes_on_captured_files(
    build: Build, tmp_path: Path, machine: str, key: bytes, node: str
) -> None:
    # The root filesystem measured is /dev (its use does not move while the test runs).
    case = fixture_case(machine, tmp_path, key=key, node=node, interval=0.05, fs_root="/dev")
    ts = 1764060000.1235
    assert case.compiled(build.command, 1, [], 41, ts, build.env) == case.python(1, [], 41, ts)


@pytest.mark.parametrize("machine", ["raspberrypi4", "raspberrypi5"])
def test_same_process_datagrams_on_captured_files(
    build: Build, tmp_path: Path, machine: str
) -> None:
    def case(where: str) -> Case:
        return fixture_case(machine, tmp_path / where, procs_every=1,
                            page_size=PAGE_SIZES[machine], interval=0.6)  # fmt: skip

    compiled = case("c").compiled(build.command, 2, [later_processes(machine)], 9, 1.5, build.env)
    assert len(compiled) == 3 and b'"procs":[[' in compiled[2]
    assert compiled == case("py").python(2, [later_processes(machine)], 9, 1.5)


def test_same_process_datagrams_with_odd_processes(build: Build, tmp_path: Path) -> None:
    def case(where: str) -> tuple[Case, list[dict[str, str]]]:
        built = fixture_case("raspberrypi4", tmp_path / where, procs_every=1, interval=0.6)
        return built, odd_process_rounds(built.proc, 4)

    compiled_case, rounds = case("c")
    compiled = compiled_case.compiled(build.command, 5, rounds, 100, 1.5, build.env)
    python_case, rounds = case("py")
    assert compiled == python_case.python(5, rounds, 100, 1.5)


@pytest.mark.parametrize("seed", range(2))
def test_same_process_datagrams_on_random_processes(
    build: Build, tmp_path: Path, seed: int
) -> None:
    def case(where: str) -> tuple[Case, list[dict[str, str]]]:
        built = fixture_case("raspberrypi5", tmp_path / where, procs_every=1, interval=0.6)
        return built, random_process_rounds(random.Random(seed), built.proc, 2)

    compiled_case, rounds = case("c")
    compiled = compiled_case.compiled(build.command, 3, rounds, 1, 1.5, build.env)
    python_case, rounds = case("py")
    assert compiled == python_case.python(3, rounds, 1, 1.5)


def test_same_bytes_with_an_interface_name_that_is_not_utf8(build: Build, tmp_path: Path) -> None:
    case = fixture_case("raspberrypi", tmp_path)
    dev = case.proc / "net" / "dev"
    dev.write_bytes(dev.read_bytes().replace(b"wlan0", b"wl\xff0"))
    assert case.compiled(build.command, 1, [], 7, 1.5, build.env) == case.python(1, [], 7, 1.5)


@pytest.mark.parametrize("seed", range(6))
def test_same_bytes_on_random_machines(build: Build, tmp_path: Path, seed: int) -> None:
    case, versions, ts = random_case(seed, tmp_path)
    python = case.python(3, versions[1:], 1000, ts)
    case.rewrite(versions[0])
    compiled = case.compiled(build.command, 3, versions[1:], 1000, ts, build.env)
    assert compiled == python
    for data in compiled:
        assert len(data) <= MAX_DATAGRAM
        decode(data, {case.key_id: case.key}, allow_unsigned=False, source="x")


@pytest.mark.parametrize(
    ("machine", "seq", "ts"),
    [
        # Counters and a boot time that a 32-bit long or time_t would cut short; 2100-01-01.
        ("beyond32", 2**40, 4102444800.125),
        ("beyond64", 7, 1764060000.5),
    ],
)
def test_same_bytes_with_large_numbers(
    build: Build, tmp_path: Path, machine: str, seq: int, ts: float
) -> None:
    case = fixture_case(machine, tmp_path, interval=0.05)
    assert case.compiled(build.command, 1, [], seq, ts, build.env) == case.python(1, [], seq, ts)


def test_same_bytes_on_a_machine_with_thousands_of_cores_and_interfaces(
    build: Build, tmp_path: Path
) -> None:
    proc, versions = random_proc(random.Random(5), tmp_path, cores=3000, ifaces=3000)
    # A sample of files this large takes a tenth of a second under qemu: a second apart.
    case = Case(proc, interval=1.0)
    python = case.python(2, versions[1:], 10, 1764060000.5)
    case.rewrite(versions[0])
    assert case.compiled(build.command, 2, versions[1:], 10, 1764060000.5, build.env) == python


@pytest.mark.parametrize(
    ("harness", "check"),
    [
        (NUMBER_HARNESS, lambda command, env: wrong_numbers(command, number_cases(20_000), env)),
        (READER_HARNESS, lambda command, env: wrong_readings(command, reader_cases(20_000), env)),
    ],
    ids=["written", "read"],
)
def test_numbers_are_written_and_read_as_python_does(
    build: Build, tmp_path: Path, harness: str, check: Callable[..., list[object]]
) -> None:
    source = tmp_path / "harness.c"
    source.write_text(harness)
    program = tmp_path / "harness"
    flags = SANITIZE if build.name == "sanitized" else ()
    subprocess.run(
        [build.cc, "-O2", *flags, f'-DAGENT_SOURCE="{native.SOURCE}"', "-o", str(program),
         str(source), "-lm"],
        check=True,
    )  # fmt: skip
    assert not check([*build.command[:-1], str(program)], build.env)


@pytest.mark.parametrize("build", ["armhf"], indirect=True)
def test_the_32_bit_build_uses_64_bit_time_and_file_calls(build: Build) -> None:
    # On armhf, long and (by default) time_t are 32 bits: the program must call the C library's
    # 64-bit clock, timer, pread and statvfs, or its wall clock stops in 2038.
    nm = build.cc.replace("-gcc", "-nm")
    symbols = subprocess.run([nm, "-D", build.path], capture_output=True, text=True, check=True)
    imported = {line.split()[-1].split("@")[0] for line in symbols.stdout.splitlines()}
    assert {"__clock_gettime64", "__setitimer64", "pread64", "statvfs64"} <= imported
    assert not {"clock_gettime", "setitimer", "pread", "statvfs"} & imported


@pytest.mark.parametrize("build", ["sanitized"], indirect=True)
def test_a_sanitizer_report_fails_the_comparison(build: Build, tmp_path: Path) -> None:
    # The check of the check: one cpu line too many kept writes past a buffer, which this
    # build must report (and the comparison refuse) even where the bytes come out right.
    source = Path(native.SOURCE).read_text()
    assert source.count("if (lines <= MAX_CORES) {") == 1
    mutant = tmp_path / "agent.c"
    mutant.write_text(source.replace("if (lines <= MAX_CORES) {", "if (lines <= MAX_CORES + 1) {"))
    path = tmp_path / "mutant"
    native.compile_agent(str(path), cc=build.cc, extra=SANITIZE, source=str(mutant))
    proc, _ = random_proc(random.Random(1), tmp_path, cores=200, ifaces=0)
    case = Case(proc, interval=0.05)
    with pytest.raises(AssertionError, match=r"runtime error: store to address|AddressSanitizer"):
        case.compiled([str(path)], 1, [], 1, 1.5, build.env)
