"""The wheel's build step: compile the agent (agent.c) into the wheel, as psutil ships its C.

Everything else about the package is in pyproject.toml. Building a wheel (`pip install .`,
`pip wheel .`) compiles src/bramble/telemetry/agent.c with $CC (else cc or gcc), statically
linked, into bramble/telemetry/bramble-agent, and tags the wheel for the machine that program
is made for, as read from its ELF header: `py3-none-manylinux_2_17_<arch>` (and musllinux):
the program needs no Python ABI and, being static, no particular C library. A cross compiler
makes the wheel of another machine: `CC=aarch64-linux-gnu-gcc pip wheel --no-deps .` (see
scripts/build-wheels). Where static linking is not possible the program is linked to the
C library and the wheel tagged `linux_<arch>` only.

Without a compiler (a board installing from the source archive) the build says so and makes
a pure wheel (`py3-none-any`) without the program: `bramble agent` then builds it on first
start where a compiler is, or runs the Python agent. $BRAMBLE_AGENT_BUILD chooses: `auto`
(the default, as just said), `required` (fail without the program, for release builds) or
`none` (a pure wheel, for any machine).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType

from setuptools import Distribution, setup
from setuptools.command.bdist_wheel import bdist_wheel
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
PROGRAM = ("bramble", "telemetry", "bramble-agent")
# Architectures with a manylinux (glibc) and musllinux platform tag, as platform tags name them.
TAGGED = ("x86_64", "i686", "aarch64", "armv7l")
MODES = ("auto", "required", "none")


def _native() -> ModuleType:
    """bramble.telemetry.native, loaded from its file: the agent's source path, its compiler
    flags and its ELF reader, without importing the package being built."""
    path = HERE / "src" / "bramble" / "telemetry" / "native.py"
    spec = importlib.util.spec_from_file_location("_bramble_native", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_static(path: Path) -> bool:
    """True when the ELF program at PATH names no program interpreter (PT_INTERP): it needs
    no dynamic loader and no shared C library."""
    data = path.read_bytes()
    wide, order = data[4] == 2, "little" if data[5] == 1 else "big"

    def number(at: int, size: int) -> int:
        return int.from_bytes(data[at : at + size], order)

    table, size, count = (
        (number(32, 8), number(54, 2), number(56, 2))
        if wide
        else (number(28, 4), number(42, 2), number(44, 2))
    )
    return all(number(table + i * size, 4) != 3 for i in range(count))  # 3: PT_INTERP


def platform_tag(arch: str, static: bool, here: str) -> str:
    """The wheel's platform tag for a program made for ARCH, built on a machine of arch HERE."""
    if arch in TAGGED:
        return (
            f"manylinux_2_17_{arch}.manylinux2014_{arch}.musllinux_1_1_{arch}"
            if static
            else f"linux_{arch}"
        )
    if arch == here:  # another machine (riscv64...), building for itself: its own name
        return sysconfig.get_platform().replace("-", "_").replace(".", "_")
    raise RuntimeError(f"no platform tag known for a program made for {arch}")


def compile_agent(target: Path, mode: str) -> str | None:
    """Compile the agent into TARGET; the wheel's platform tag, or None if not built."""
    native = _native()
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return _not_built(mode, "no C compiler (set CC, or install gcc)")
    base = [*shlex.split(cc), *native.FLAGS, str(target), native.SOURCE, "-lm"]
    errors = ""
    # Static first: the wheel then runs on any Linux of its architecture.
    for extra in (["-static", "-s"], ["-s"]):
        done = subprocess.run([*base, *extra], capture_output=True, text=True, check=False)
        if done.returncode == 0 and target.exists():
            break
        errors = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[0]
    else:
        return _not_built(mode, f"{cc} could not build the agent: {errors}")
    target.chmod(0o755)
    arch = native.elf_arch(str(target))
    if arch is None:
        raise RuntimeError(f"{cc} made {target}, which is no ELF program")
    return platform_tag(arch, is_static(target), native.this_arch())


def _not_built(mode: str, reason: str) -> None:
    if mode == "required":
        raise RuntimeError(f"the compiled agent is required ($BRAMBLE_AGENT_BUILD): {reason}")
    print(f"bramble: building without the compiled agent: {reason}")
    return None


class BuildPy(build_py):
    """build_py, then the agent beside the package's modules (not for editable installs,
    which build it on first start)."""

    distribution: AgentDistribution

    def run(self) -> None:
        super().run()
        self.distribution.agent_platform = None
        mode = os.environ.get("BRAMBLE_AGENT_BUILD", "auto") or "auto"
        if mode not in MODES:
            raise RuntimeError(f"BRAMBLE_AGENT_BUILD must be one of {', '.join(MODES)}")
        if self.editable_mode:
            return
        target = Path(self.build_lib, *PROGRAM)
        target.unlink(missing_ok=True)  # never a program left from an earlier build
        if mode != "none":
            self.distribution.agent_platform = compile_agent(target, mode)


class AgentDistribution(Distribution):
    """Platform-specific (installed in platlib, as extension modules are) once it holds the
    agent's program."""

    agent_platform: str | None = None

    def has_ext_modules(self) -> bool:
        return self.agent_platform is not None


class BdistWheel(bdist_wheel):
    """A platform wheel (`py3-none-<platform>`) when it carries the agent, else a pure one."""

    distribution: AgentDistribution

    def run(self) -> None:
        if not self.skip_build:
            self.run_command("build")
        self.root_is_pure = self.distribution.agent_platform is None
        super().run()

    def get_tag(self) -> tuple[str, str, str]:
        platform = self.distribution.agent_platform
        return super().get_tag() if platform is None else ("py3", "none", platform)


setup(distclass=AgentDistribution, cmdclass={"build_py": BuildPy, "bdist_wheel": BdistWheel})
