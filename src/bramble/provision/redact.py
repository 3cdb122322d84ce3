"""Secrets out of what `apply` prints: private keys, the secrets file's values, known secrets.

A diff is for a person at a terminal (or a CI log, or a screen share): it shows that a secret
changed, never the secret. Each hidden value becomes a short fingerprint (the first 8 hex
digits of its SHA-256), so a change still shows as a changed line, and an unchanged key as
no line at all. Pure functions of text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from bramble.provision.render import private

_PEM_PRIVATE = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?-----END \1-----", re.DOTALL)
# `name = "value"` (or a bare value) in a TOML secrets file.
_ASSIGNMENT = re.compile(r'^(\s*[A-Za-z0-9_.-]+\s*=\s*)(".*"|\'.*\'|[^#\s].*?)(\s*(?:#.*)?)$')
_SHORTEST = 8  # a value shorter than this is no secret worth hiding, and would hide too much


def fingerprint(secret: str) -> str:
    """A short, non-reversible name for SECRET: `sha256:<8 hex digits>`."""
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:8]


def redact(text: str, path: str, secrets: Iterable[str] = ()) -> str:
    """TEXT as it may be shown: private keys, the values of a private file (PATH) and every
    occurrence of SECRETS replaced by fingerprints."""
    text = _PEM_PRIVATE.sub(
        lambda m: f"<{m.group(1).lower()} not shown: {fingerprint(m.group(0))}>", text
    )
    if private(path):
        lines = []
        for line in text.splitlines(keepends=True):
            body = line.rstrip("\n")
            match = _ASSIGNMENT.match(body)
            if match and not body.lstrip().startswith(("#", "[")):
                body = f"{match.group(1)}<not shown: {fingerprint(match.group(2))}>{match.group(3)}"
            lines.append(body + line[len(line.rstrip("\n")) :])
        text = "".join(lines)
    for secret in sorted({s for s in secrets if len(s) >= _SHORTEST}, key=len, reverse=True):
        text = text.replace(secret, f"<secret not shown: {fingerprint(secret)}>")
    return text
