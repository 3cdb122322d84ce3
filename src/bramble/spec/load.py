"""Finding and loading the spec and its secrets; parsing and validating their text.

Loading never lets a pydantic or TOML error reach the user: every problem becomes a
`SpecError` naming the file, the key path, the line where it can be found, and the fix.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bramble.errors import SpecError
from bramble.spec.checks import Problem, pydantic_problems, semantic_problems
from bramble.spec.locate import key_lines, line_of
from bramble.spec.models import (
    MAX_TELEMETRY_KEY,
    SECRETS_NAME,
    SPEC_NAME,
    SYSTEM_SPEC,
    Secrets,
    Spec,
)


def parse_spec(text: str, file: str = SPEC_NAME) -> Spec:
    """Parse and validate spec TEXT; FILE names it in errors. Pure: no file access."""
    try:
        data = tomllib.loads(text)
        return _validate(data, text, file)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        raise SpecError(
            f"not valid TOML: {exc}",
            file=file,
            line=int(match.group(1)) if match else None,
            fix="check quotes, brackets and '=' on that line",
        ) from None
    except RecursionError:
        raise SpecError(
            "arrays or tables nested too deeply to read",
            file=file,
            fix="a spec nests a few levels at most: look for runs of '[' or '{'",
        ) from None


def _validate(data: dict[str, Any], text: str, file: str) -> Spec:
    lines = key_lines(text)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = list(pydantic_problems(exc))
    else:
        problems = list(semantic_problems(spec))
        if not problems:
            return spec
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise SpecErrors(
        [
            SpecError(p.message, file=file, key=p.key, line=line_of(lines, p.key), fix=p.fix)
            for p in problems
        ],
        summary_suffix=more,
        first=first,
    )


class SpecErrors(SpecError):
    """Every problem found in one spec; prints as the first, and says how many more."""

    def __init__(self, errors: list[SpecError], *, summary_suffix: str, first: Problem) -> None:
        self.errors = errors
        head = errors[0]
        super().__init__(
            first.message + summary_suffix,
            file=head.file,
            key=head.key,
            line=head.line,
            fix=head.fix,
        )


def find_spec_path(explicit: Path | None = None) -> Path:
    """The spec to use: EXPLICIT, else ./bramble.toml, else /etc/bramble/bramble.toml."""
    if explicit is not None:
        if not explicit.is_file():
            raise SpecError(
                "no such file", file=str(explicit), fix="run `bramble init` to write one"
            )
        return explicit
    for candidate in (Path(SPEC_NAME), SYSTEM_SPEC):
        if candidate.is_file():
            return candidate
    raise SpecError(
        f"no spec found (looked for ./{SPEC_NAME} and {SYSTEM_SPEC})",
        file=SPEC_NAME,
        fix="run `bramble init` here, or pass --spec FILE",
    )


def read_spec_text(path: Path) -> str:
    """The text of the spec file at PATH; SpecError saying why it cannot be read."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(
            f"cannot read: {exc.strerror}", file=str(path), fix="check the path"
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SpecError("not UTF-8 text", file=str(path), fix="save the file as UTF-8") from None


def load_spec(path: Path) -> Spec:
    """Read and validate the spec at PATH."""
    return parse_spec(read_spec_text(path), str(path))


def secrets_path(spec_path: Path) -> Path:
    """Where the secrets file of the spec at SPEC_PATH lives: beside it."""
    return spec_path.parent / SECRETS_NAME


def parse_secrets(text: str, file: str = SECRETS_NAME) -> Secrets:
    """Parse secrets TEXT. Pure."""
    fix = "run `bramble init --force` in a scratch directory and copy its secrets file"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", file=file, fix=fix) from None
    telemetry = data.get("telemetry")
    admin = data.get("admin")
    if not isinstance(telemetry, dict) or not isinstance(admin, dict):
        raise SpecError("needs [telemetry] and [admin] tables", file=file, fix=fix)
    key_id = telemetry.get("key_id")
    key_hex = telemetry.get("key")
    token = admin.get("token")
    if not isinstance(key_id, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", key_id):
        raise SpecError(
            "must be 1-32 letters, digits, '_', '.', '-'",
            file=file,
            key="telemetry.key_id",
            fix=fix,
        )
    try:
        key = bytes.fromhex(key_hex) if isinstance(key_hex, str) else b""
    except ValueError:
        key = b""
    if not 16 <= len(key) <= MAX_TELEMETRY_KEY:
        raise SpecError(
            f"must be 32 to {2 * MAX_TELEMETRY_KEY} hex digits",
            file=file,
            key="telemetry.key",
            fix=fix,
        )
    if not isinstance(token, str) or len(token) < 16:
        raise SpecError(
            "must be a string of at least 16 characters", file=file, key="admin.token", fix=fix
        )
    join = data.get("join", {})
    join_token = join.get("token", "") if isinstance(join, dict) else None
    if not isinstance(join_token, str) or 0 < len(join_token) < 16:
        raise SpecError(
            "must be a string of at least 16 characters", file=file, key="join.token", fix=fix
        )
    previous = join.get("previous", "") if isinstance(join, dict) else ""
    until = join.get("previous_until", 0.0) if isinstance(join, dict) else 0.0
    if not isinstance(previous, str) or not isinstance(until, int | float):
        raise SpecError(
            "previous must be a string and previous_until a time (epoch seconds)",
            file=file,
            key="join.previous",
            fix=fix,
        )
    return Secrets(
        telemetry_key_id=key_id,
        telemetry_key=key,
        admin_token=token,
        join_token=join_token,
        join_previous=previous,
        join_previous_until=float(until),
    )


def load_secrets(spec_path: Path) -> Secrets:
    """Read the secrets file beside the spec at SPEC_PATH."""
    path = secrets_path(spec_path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise SpecError(
            "secrets file not found", file=str(path), fix="run `bramble init` to create it"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read: {exc}", file=str(path), fix="check the file") from None
    return parse_secrets(text, str(path))


def secrets_mode_ok(spec_path: Path) -> bool:
    """Whether the secrets file is private to its owner (mode 0600 or stricter)."""
    try:
        return os.stat(secrets_path(spec_path)).st_mode & 0o077 == 0
    except OSError:
        return False


def check_secrets(spec_path: Path) -> tuple[Path, str]:
    """The secrets file beside SPEC_PATH, valid, and a warning ('' if none) for `bramble check`.

    Every agent, the master and the jobs commands read it, so a spec without it is not a
    cluster that runs: SpecError saying so. A file others can read is only warned about.
    """
    path = secrets_path(spec_path)
    if not path.exists():
        raise SpecError(
            "secrets file not found beside the spec: the agents, the master and the jobs "
            "commands need it",
            file=str(path),
            fix="copy it from where `bramble init` wrote the spec, or run `bramble init` in "
            "a new directory and copy its bramble.secrets.toml; --spec-only checks the spec "
            "alone",
        )
    load_secrets(spec_path)
    if not secrets_mode_ok(spec_path):
        mode = os.stat(path).st_mode & 0o777
        return path, f"{path} is readable by others (mode {mode:04o}): chmod 600 {path}"
    return path, ""
