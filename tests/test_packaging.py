"""Install like a user: the wheel, in a fresh venv, with no extras and no C compiler on PATH.

The venv sees nothing of this one (no --system-site-packages) and its dependencies come from
the package index with pip's own cache, so an import the package does not declare fails
here, whatever the test environment happens to hold. Then the README's first commands run
from that venv, and the agent must run the compiled program the wheel carries.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from bramble_testing import free_port, wait_for

from bramble.telemetry import native
from bramble.telemetry.decode import decode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
DIST = "bramble_cluster"  # the distribution's name, as wheel file names spell it
# What a C compiler may be called on PATH; the shadow PATH leaves these out.
COMPILER = re.compile(r"^(cc|c89|c99|gcc|clang|tcc)([-.].*)?$|.*-(gcc|cc|clang)(-[\d.]+)?$")
SKIP_COPY = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "out"
)


def source_copy(directory: Path) -> Path:
    """The project's files in DIRECTORY, so building leaves nothing in the checkout."""
    tree = directory / "bramble"
    shutil.copytree(ROOT, tree, ignore=SKIP_COPY)
    return tree


def no_compiler_path(directory: Path, first: list[Path]) -> str:
    """A PATH holding every program of this one except C compilers (links in DIRECTORY)."""
    directory.mkdir(parents=True, exist_ok=True)
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry or not os.path.isdir(entry):
            continue
        for name in os.listdir(entry):
            target = os.path.join(entry, name)
            if COMPILER.match(name) or (directory / name).exists():
                continue
            if os.path.isfile(target) and os.access(target, os.X_OK):
                (directory / name).symlink_to(target)
    return os.pathsep.join([*(str(p) for p in first), str(directory)])


def user_env(path: str, cache: Path) -> dict[str, str]:
    """The environment of a user's shell: the given PATH, no CC, no venv of ours."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CC", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env["PATH"] = path
    env["BRAMBLE_CACHE_DIR"] = str(cache)  # empty: nothing may be built on first start
    return env


def _exe(process: psutil.Process) -> str:
    try:
        return str(process.exe())
    except psutil.Error:
        return ""


class Venv:
    """A fresh virtual environment and the user environment to run its commands in."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.bin = root / "bin"

    def run(
        self, *args: str, cwd: Path | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        return subprocess.run(
            command,
            env=self.env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def site_packages(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built as `pip wheel .` builds it (isolated, build dependencies from the
    index), from a copy of the project."""
    work = tmp_path_factory.mktemp("build")
    tree = source_copy(work)
    out = work / "wheels"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(tree)],
        check=True,
        capture_output=True,
    )
    print(f"wheel built in {time.monotonic() - started:.1f} s")
    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path) -> Iterator[Venv]:
    """The wheel installed, no extras, into a fresh venv with no C compiler on PATH.

    The venv is where every user may read it, as the README asks: run as root, the demo's
    jobs run as the user `bramble`, who must be able to run its Python.
    """
    work = Path(tempfile.mkdtemp(prefix="bramble-user-"))
    work.chmod(0o755)
    root = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    env = user_env(no_compiler_path(work / "shadow-bin", [root / "bin"]), work / "cache")
    venv = Venv(root, env)
    started = time.monotonic()
    installed = venv.run("python", "-m", "pip", "install", "-q", str(wheel), timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    print(f"installed in {time.monotonic() - started:.1f} s")
    try:
        yield venv
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_no_compiler_on_the_user_path(venv: Venv) -> None:
    found = [
        name
        for name in ("cc", "gcc", "x86_64-linux-gnu-gcc", "aarch64-linux-gnu-gcc")
        if shutil.which(name, path=venv.env["PATH"])
    ]
    assert found == []
    assert shutil.which("python", path=venv.env["PATH"]) == str(venv.bin / "python")


def test_the_distribution_has_a_name_of_its_own(wheel: Path) -> None:
    # "bramble" on the public index is an unrelated library.
    assert wheel.name.startswith(f"{DIST}-"), wheel.name


def test_the_wheel_carries_the_compiled_agent(wheel: Path) -> None:
    # A platform wheel holding the program, executable, not a pure-Python wheel.
    assert not wheel.name.endswith("-none-any.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("bramble/telemetry/bramble-agent")
        assert (info.external_attr >> 16) & 0o111, "the agent is not executable in the wheel"
        assert archive.read(info.filename)[:4] == b"\x7fELF"


def test_every_module_imports_without_extras(venv: Venv) -> None:
    # Top-level imports of every module; imports inside functions are checked against the
    # declared dependencies by tests/test_dependencies.py.
    script = (
        "import importlib, pkgutil, bramble\n"
        "for m in pkgutil.walk_packages(bramble.__path__, 'bramble.'):\n"
        "    if not m.name.endswith('.__main__'):\n"
        "        importlib.import_module(m.name)\n"
        "print('ok')\n"
    )
    out = venv.run("python", "-c", script)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "ok"


def test_readme_commands_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    init = venv.run("bramble", "init", "mycluster", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    spec = tmp_path / "mycluster" / "bramble.toml"
    assert spec.is_file() and (tmp_path / "mycluster" / "tls").is_dir()

    check = venv.run("bramble", "check", str(spec))
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip().startswith(f"{spec}: ok (")

    render = venv.run("bramble", "render", "--spec", str(spec), "--out", "out", cwd=tmp_path)
    assert render.returncode == 0, render.stderr
    assert (tmp_path / "out" / "node" / "user-data").is_file()
    assert (tmp_path / "out" / "master" / "etc" / "dnsmasq.d" / "bramble.conf").is_file()

    # What a node image runs: the wheel's program is there, so nothing is built.
    prepare = venv.run("bramble", "agent", "--prepare")
    assert prepare.returncode == 0, prepare.stderr
    program = venv.site_packages() / "bramble" / "telemetry" / "bramble-agent"
    assert prepare.stdout.strip() == str(program)
    assert not Path(venv.env["BRAMBLE_CACHE_DIR"]).exists()


def test_demo_runs_the_compiled_agent_from_the_wheel(venv: Venv, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo.out"
    with out.open("wb") as log:
        demo = subprocess.Popen(
            [str(venv.bin / "bramble"), "demo", "--local", "--nodes", "2", "--port", str(port)],
            env=venv.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def nodes_up() -> bool:
            try:
                nodes = httpx.get(f"{base}/api/nodes", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            return sorted((n["name"], n["status"]) for n in nodes) == [
                ("node-1", "up"),
                ("node-2", "up"),
            ]

        # Up, or ended: a demo that stopped says why in its output.
        wait_for(lambda: nodes_up() or demo.poll() is not None, 60, "both demo nodes up")
        assert demo.poll() is None and nodes_up(), out.read_text()
        status = venv.run("bramble", "status", "--url", base)
        assert status.returncode == 0, status.stderr
        assert "node-1" in status.stdout and "node-2" in status.stdout

        program = venv.site_packages() / "bramble" / "telemetry" / "bramble-agent"
        text = out.read_text()
        assert f"agents   compiled, from the package ({program})" in text, text
        state = re.search(r"\(log (\S+)/master\.log\)", text)
        assert state is not None
        # Each agent said once which engine runs, and from where.
        for node in ("node-1", "node-2"):
            agent_log = (Path(state.group(1)) / f"{node}.log").read_text()
            line = f"bramble agent: running the compiled agent from the package ({program})"
            assert agent_log.count(line) == 1, agent_log
        # The agents' processes are the wheel's program, and nothing was built here.
        children = psutil.Process(demo.pid).children(recursive=True)
        running = [c for c in children if _exe(c) == str(program)]
        assert len(running) == 2, [(c.pid, _exe(c)) for c in children]
        assert list(Path(venv.env["BRAMBLE_CACHE_DIR"]).glob("bramble-agent-*")) == []
    finally:
        if demo.poll() is None:
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait()


def test_the_source_archive_installs_without_a_compiler(tmp_path: Path) -> None:
    """On a board with no compiler, `pip install` of the source archive still works: a pure
    wheel, without the program (the agent then builds it on first start, or runs the Python
    agent)."""
    tree = source_copy(tmp_path)
    builder = tmp_path / "builder"
    subprocess.run([sys.executable, "-m", "venv", str(builder)], check=True)
    python = str(builder / "bin" / "python")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "setuptools>=70.1"], check=True, capture_output=True
    )
    sdist = subprocess.run(
        [python, "-c", "from setuptools import build_meta; print(build_meta.build_sdist('dist'))"],
        cwd=tree, check=True, capture_output=True, text=True,
    ).stdout.split()[-1]  # fmt: skip
    archive = tree / "dist" / sdist
    assert archive.name == "bramble_cluster-0.1.0.tar.gz"
    env = user_env(no_compiler_path(tmp_path / "shadow-bin", [builder / "bin"]), tmp_path / "c")

    def pip_wheel(out: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", str(tmp_path / out), str(archive)],
            env={**env, **extra}, capture_output=True, text=True, check=False,
        )  # fmt: skip

    done = pip_wheel("pure")
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "pure").glob("*.whl")
    assert wheel.name == "bramble_cluster-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zipped:
        names = zipped.namelist()
    assert "bramble/telemetry/agent.c" in names and "bramble/telemetry/native.py" in names
    assert "bramble/telemetry/bramble-agent" not in names
    # A release build refuses to make that wheel.
    refused = pip_wheel("required", BRAMBLE_AGENT_BUILD="required")
    assert refused.returncode != 0
    assert "the compiled agent is required" in refused.stdout + refused.stderr


QEMU = {"aarch64": "qemu-aarch64", "armv7l": "qemu-arm"}
SYSROOT = {"aarch64": "/usr/aarch64-linux-gnu", "armv7l": "/usr/arm-linux-gnueabihf"}
CROSS = {"aarch64": "aarch64-linux-gnu-gcc", "armv7l": "arm-linux-gnueabihf-gcc"}


@pytest.mark.parametrize("arch", ["aarch64", "armv7l"])
def test_cross_built_wheel_runs_on_its_machine(arch: str, tmp_path: Path) -> None:
    """scripts/build-wheels makes the board's wheel here; its agent, run by qemu, sends a
    datagram the master accepts."""
    for tool in (CROSS[arch], QEMU[arch]):
        if shutil.which(tool) is None:
            pytest.skip(f"needs {tool} (Debian: gcc-*-linux-gnu*, qemu-user)")
    tree = source_copy(tmp_path)
    built = subprocess.run(
        [str(tree / "scripts" / "build-wheels"), "-o", str(tmp_path / "wheels"), arch],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheels").glob("*.whl")
    # linked to glibc: tagged with the newest glibc symbol version it needs (2.34 on Debian 12)
    assert re.search(rf"-py3-none-manylinux_2_(\d+)_{arch}\.whl$", wheel.name), wheel.name
    program = tmp_path / "bramble-agent"
    with zipfile.ZipFile(wheel) as archive:
        program.write_bytes(archive.read("bramble/telemetry/bramble-agent"))
    program.chmod(0o755)
    assert native.elf_arch(str(program)) == arch

    key = bytes(range(32))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(30)
        read_end, write_end = os.pipe()
        os.write(write_end, f"k1:{key.hex()}".encode())
        os.close(write_end)
        # qemu runs it with the board's C library from the cross compiler's sysroot
        agent = subprocess.run(
            [QEMU[arch], "-L", SYSROOT[arch], str(program), "--node", f"pi-{arch}",
             "--group", "127.0.0.1", "--port", str(rx.getsockname()[1]), "--interval", "0.2",
             "--key-fd", str(read_end), "--count", "1"],
            pass_fds=[read_end], capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        os.close(read_end)
        assert agent.returncode == 0, agent.stderr
        data = rx.recv(2048)
    sample = decode(data, {"k1": key}, allow_unsigned=False, source="127.0.0.1")
    assert sample.signed and sample.node == f"pi-{arch}"
