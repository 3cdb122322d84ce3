"""bramble's own exception types: what a user can meet, said in one line."""

from __future__ import annotations


class BrambleError(Exception):
    """An error a user can meet; the CLI prints it in one line and exits with code 2."""


class SpecError(BrambleError):
    """The spec (or its secrets file) is missing or invalid.

    The message names the file, the key path, the line where known, and the fix.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        key: str | None = None,
        line: int | None = None,
        fix: str | None = None,
    ) -> None:
        self.file = file
        self.key = key
        self.line = line
        self.fix = fix
        self.reason = message
        where = file or "spec"
        if line is not None:
            where += f":{line}"
        text = f"{where}: {key + ': ' if key else ''}{message}"
        if fix:
            text += f" ({fix})"
        super().__init__(text)


class MissingToolError(BrambleError):
    """A system program bramble needs is not installed."""

    def __init__(self, tool: str, package: str) -> None:
        self.tool = tool
        self.package = package
        super().__init__(f"{tool} not found: install the Debian package '{package}'")


class MasterUnreachableError(BrambleError):
    """The CLI could not talk to a running master."""
