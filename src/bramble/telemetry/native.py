"""The compiled agent: build `agent.c` once per machine, and find it again on every start.

The build is one `cc` call of a few hundred milliseconds, made by the first `bramble agent`
(or `bramble agent --prepare`, for images) and kept in a cache directory under a name that
holds the source's hash, so an upgrade builds afresh. Concurrent starts (a lab booting 32
nodes) wait on one lock rather than compile 32 times.

This module runs in the lean agent process before it execs the compiled program, so it
imports only small built-in modules: no `subprocess`, `shutil` or `pathlib`.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # as typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from collections.abc import Sequence

try:
    from _sha256 import sha256  # type: ignore[import-not-found]
except ImportError:  # pragma: no cover - other interpreters
    from hashlib import sha256

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "agent.c")
CACHE_ENV = "BRAMBLE_CACHE_DIR"
FLAGS = ("-O2", "-std=c11", "-Wall", "-o")


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
    """The compiled agent's path, building it if this machine has none yet."""
    return find() or build()


def prepare() -> str:
    """Build the compiled agent if need be, before many agents start and each wait for it;
    which agent they will run, for a progress line."""
    try:
        return f"compiled ({ensure()})"
    except Unavailable as exc:
        return f"Python ({exc})"
