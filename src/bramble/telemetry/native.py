"""The compiled agent: the program the wheel carries, else `agent.c` built once per machine.

A wheel built where a C compiler was found (a platform wheel: x86_64, aarch64, armv7l)
carries the program beside this module, linked to glibc and tagged for the oldest glibc it
runs on; it is used when it is safe to run and made for this machine. Without it (a source
install, another architecture) the first `bramble agent` (or `bramble agent --prepare`, for
images) builds it with one `cc` call of a few hundred milliseconds and keeps it in a cache
directory under a name that holds the source's hash, so an upgrade builds afresh. Concurrent
starts (a lab booting 32 nodes) wait on one lock rather than compile 32 times.

This module runs in the lean agent process before it execs the compiled program, so it
imports only small built-in modules: no `subprocess`, `shutil` or `pathlib`.
"""

from __future__ import annotations

import os
import stat
import sys

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence

try:
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "agent.c")
PACKAGED = os.path.join(HERE, "bramble-agent")  # put there by the wheel's build (setup.py)
CACHE_ENV = "BRAMBLE_CACHE_DIR"
FLAGS = ("-O2", "-std=c11", "-Wall", "-o")

# ELF machine numbers, named as platform tags name the architectures.
_MACHINES = {3: "i686", 62: "x86_64", 183: "aarch64"}
_EM_ARM = 40
_EF_ARM_ABI_FLOAT_HARD = 0x400


class Unavailable(RuntimeError):
    """The compiled agent cannot be used here; the message says why."""


def cache_dir() -> str:
    """Where built programs are kept: $BRAMBLE_CACHE_DIR, /var/cache/bramble for root, or
    the user's cache directory."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return explicit
    if os.geteuid() == 0:
        return "/var/cache/bramble"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "bramble")


def binary_path(directory: str | None = None) -> str:
    """The path the program built from this version of agent.c has."""
    try:
        with open(SOURCE, "rb") as f:
            digest = sha256(f.read()).hexdigest()[:16]
    except OSError as exc:
        raise Unavailable(f"the agent's C source is missing ({exc})") from None
    # The machine's architecture too: a cache directory may be shared by unlike boards.
    return os.path.join(directory or cache_dir(), f"bramble-agent-{os.uname().machine}-{digest}")


def _check_owner(path: str, info: os.stat_result) -> None:
    # Whoever can replace the program runs code as the agent's user: only we or root may.
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise Unavailable(f"{path} may be changed by other users; not running it")


def elf_arch(path: str) -> str | None:
    """The architecture the ELF program at PATH is made for, as platform tags name it
    (x86_64, aarch64, armv7l for hard-float 32-bit ARM...); None if it is no ELF program."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            head = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError:
        return None
    if len(head) < 52 or head[:4] != b"\x7fELF" or head[4] not in (1, 2):
        return None
    little = head[5] == 1
    machine = int.from_bytes(head[18:20], "little" if little else "big")
    if machine == _EM_ARM and head[4] == 1:
        flags = int.from_bytes(head[36:40], "little" if little else "big")
        # armhf (Raspberry Pi OS, Debian): what the armv7l platform tag means.
        return "armv7l" if flags & _EF_ARM_ABI_FLOAT_HARD else "armel"
    name = _MACHINES.get(machine) or f"elf-machine-{machine}"
    return name if little else f"{name}-big-endian"


def this_arch() -> str:
    """The architecture this Python runs as (32-bit userland on a 64-bit kernel reads as the
    userland's): the ELF header of the interpreter, else the kernel's name."""
    arch = elf_arch(sys.executable) if sys.executable else None
    if arch is not None:
        return arch
    machine = os.uname().machine
    return {"armv8l": "armv7l", "amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def packaged() -> str | None:
    """The program the wheel carries, or None for an install without one.

    Raises Unavailable, saying why, when it is there but cannot be used here.
    """
    try:
        info = os.stat(PACKAGED)
    except OSError:
        return None
    _check_owner(os.path.dirname(PACKAGED), os.stat(os.path.dirname(PACKAGED)))
    _check_owner(PACKAGED, info)
    arch, here = elf_arch(PACKAGED), this_arch()
    if arch != here:
        raise Unavailable(
            f"the packaged agent is made for {arch or 'no known machine'}, not {here}"
        )
    if not os.access(PACKAGED, os.X_OK):
        raise Unavailable(f"the packaged agent {PACKAGED} is not executable")
    return PACKAGED


def find() -> str | None:
    """The built program, if there is one that is safe to run."""
    path = binary_path()
    try:
        info = os.stat(path)
    except OSError:
        return None
    _check_owner(os.path.dirname(path), os.stat(os.path.dirname(path)))
    _check_owner(path, info)
    return path


def compiler() -> str | None:
    """The C compiler to use: $CC, else `cc` or `gcc` on PATH."""
    chosen = os.environ.get("CC")
    if chosen:
        return chosen
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        for name in ("cc", "gcc"):
            candidate = os.path.join(directory or ".", name)
            if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
                return candidate
    return None


def compile_agent(
    output: str, *, cc: str | None = None, extra: Sequence[str] = (), source: str = SOURCE
) -> None:
    """Build SOURCE (agent.c) into OUTPUT with CC (default: `compiler()`), the usual flags and
    EXTRA ones (a sanitizer, another architecture's options); Unavailable says why not."""
    cc = cc or compiler()
    if cc is None:
        raise Unavailable("no C compiler (cc) on PATH; install gcc to use it")
    directory = os.path.dirname(os.path.abspath(output))
    errors = os.path.join(directory, f".build-{os.getpid()}.log")
    actions = [
        (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, errors, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    argv = [cc, *FLAGS, output, *extra, source, "-lm"]
    try:
        child = os.posix_spawnp(cc, argv, os.environ, file_actions=actions)
        status = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
        with open(errors, "rb") as f:
            output_text = f.read(4000).decode(errors="replace").strip()
    except OSError as exc:
        raise Unavailable(f"cannot run {cc}: {exc}") from None
    finally:
        with _ignore_missing():
            os.unlink(errors)
    if status != 0 or not os.path.exists(output):
        first = output_text.splitlines()[0] if output_text else f"exit status {status}"
        raise Unavailable(f"{cc} could not build the agent: {first}")


def build() -> str:
    """Build the program into the cache (once; others wait on the lock) and return its path."""
    import fcntl

    directory = cache_dir()
    try:
        os.makedirs(directory, mode=0o755 if os.geteuid() == 0 else 0o700, exist_ok=True)
        _check_owner(directory, os.stat(directory))
        lock = os.open(os.path.join(directory, ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    except OSError as exc:
        raise Unavailable(f"cannot use the cache directory {directory}: {exc}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = find()
        if path is not None:  # built while this process waited
            return path
        path = binary_path(directory)
        partial = f"{path}.{os.getpid()}.tmp"
        try:
            compile_agent(partial)
        except Unavailable:
            with _ignore_missing():
                os.unlink(partial)
            raise
        os.chmod(partial, 0o755)
        os.replace(partial, path)
        return path
    finally:
        os.close(lock)


class _ignore_missing:
    """contextlib.suppress(FileNotFoundError), without importing contextlib."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, FileNotFoundError)


def ensure() -> str:
    """The path of the compiled agent built on this machine, building it if there is none."""
    return find() or build()


def locate() -> tuple[str, str, str]:
    """The compiled agent to run: the package's program, else one built on this machine
    (building it if need be). Returns its path, where it comes from in a few words, and why
    the package's was not used ("" when it was, or there is none).

    Raises Unavailable, saying why for each, when there is neither.
    """
    refused = ""
    try:
        path = packaged()
    except Unavailable as exc:
        refused, path = str(exc), None
    if path is not None:
        return path, "from the package", ""
    try:
        return ensure(), "built on this machine", refused
    except Unavailable as exc:
        raise Unavailable(f"{refused}; {exc}" if refused else str(exc)) from None


def describe(path: str, origin: str, refused: str) -> str:
    """One line for a found program: "from the package (PATH)", and so on."""
    return f"{origin} ({path})" + (f"; the packaged one is not used: {refused}" if refused else "")


def prepare() -> str:
    """Find or build the compiled agent before many agents start and each wait for it;
    which agent they will run, for a progress line."""
    try:
        found = locate()
    except Unavailable as exc:
        return f"Python ({exc})"
    return f"compiled, {describe(*found)}"
