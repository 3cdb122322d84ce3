"""The cluster a command works on: the spec, the text it was read from, the secrets and the TLS
material beside it.

The CLI loads it once per command (`find_cluster`) and passes it, or the part of it a module
needs, down: nothing below the CLI finds or parses the spec. Only what a command uses can fail
it: a secrets file that cannot be read is an error for `bramble agent`, not for `bramble check`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from bramble.errors import SpecError
from bramble.jobs.tls import TlsPaths
from bramble.spec import (
    SYSTEM_SPEC,
    Secrets,
    Spec,
    find_spec_path,
    load_secrets,
    parse_spec,
    read_spec_text,
    secrets_path,
)

ENV_SPEC = "BRAMBLE_SPEC"
"""The spec file every command and job script uses when none is given (the lab sets it)."""
SYSTEM_TLS = SYSTEM_SPEC.parent / "tls"


@dataclass(frozen=True, slots=True)
class Cluster:
    """One cluster: its spec, where it was read from, and the secrets beside it."""

    spec: Spec
    path: Path | None = None
    """The spec file; None for a spec made in memory (the lab's built-in one, say)."""
    text: str | None = None
    """The spec file's text, comments and all (installed as is by `render` and `apply`)."""
    found_secrets: Secrets | None = None
    """The secrets file's contents; None when there is none, or it could not be read."""
    secrets_error: SpecError | None = None
    """Why the secrets could not be read, when the file is there but unreadable or invalid."""

    def secrets(self) -> Secrets:
        """The cluster's secrets; SpecError saying what to do when there are none."""
        if self.found_secrets is not None:
            return self.found_secrets
        if self.secrets_error is not None:
            raise self.secrets_error
        where = str(secrets_path(self.path)) if self.path is not None else "bramble.secrets.toml"
        raise SpecError("secrets file not found", file=where, fix="run `bramble init` to create it")

    def secrets_if_present(self) -> Secrets | None:
        """The secrets, or None when there is no secrets file (an invalid one is an error)."""
        if self.secrets_error is not None:
            raise self.secrets_error
        return self.found_secrets

    @property
    def tls(self) -> TlsPaths:
        """Where the cluster's TLS files are: `tls/` beside the spec (`bramble init` puts them
        there), or /etc/bramble/tls for a spec made in memory."""
        if self.path is None:
            return TlsPaths(SYSTEM_TLS)
        return TlsPaths(self.path.absolute().parent / "tls")

    def spec_macs(self) -> dict[str, str]:
        """MAC to node name of the spec as its file holds it now (so boards added with
        `bramble nodes add` enroll without a restart); the loaded spec's if the file cannot
        be read or is invalid now."""
        spec = self.spec
        if self.path is not None:
            with contextlib.suppress(SpecError):
                spec = parse_spec(read_spec_text(self.path), str(self.path))
        return {n.mac: n.name for n in spec.nodes}

    @property
    def master_url(self) -> str:
        """The master's HTTP base URL, as the spec's dashboard address gives it."""
        return f"http://{self.spec.dashboard_bind}:{self.spec.dashboard.port}"


def load_cluster(path: Path) -> Cluster:
    """Read and validate the spec at PATH (parsed once), and read the secrets beside it."""
    text = read_spec_text(path)
    spec = parse_spec(text, str(path))
    found: Secrets | None = None
    error: SpecError | None = None
    if secrets_path(path).exists():
        try:
            found = load_secrets(path)
        except SpecError as exc:
            error = exc
    return Cluster(spec=spec, path=path, text=text, found_secrets=found, secrets_error=error)


def find_cluster(explicit: Path | None = None, *, env: bool = True) -> Cluster:
    """The cluster of EXPLICIT, else (with ENV, as for every command) of $BRAMBLE_SPEC, else of
    ./bramble.toml, else of /etc/bramble/bramble.toml.

    Every command looks at $BRAMBLE_SPEC, so `bramble lab exec master -- bramble status`
    (which sets it) reaches the lab's master as `bramble run` does.
    """
    if explicit is None and env and os.environ.get(ENV_SPEC):
        named = Path(os.environ[ENV_SPEC])
        if not named.is_file():
            raise SpecError(
                f"no such file (named by ${ENV_SPEC})",
                file=str(named),
                fix=f"unset {ENV_SPEC} or point it at a spec",
            )
        explicit = named
    return load_cluster(find_spec_path(explicit))
