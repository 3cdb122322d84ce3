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
    """System programs bramble needs are not installed: TOOL (from PACKAGE), and MORE.

    Every missing program is named at once, so one `apt install` fixes them all.
    """

    def __init__(self, tool: str, package: str, more: list[tuple[str, str]] | None = None) -> None:
        self.tool = tool
        self.package = package
        self.missing = [(tool, package), *(more or [])]
        if not more:
            super().__init__(f"{tool} not found: install the Debian package '{package}'")
            return
        packages: list[str] = []
        for _tool, needed in self.missing:
            packages += [p for p in needed.split(" + ") if p not in packages]
        tools = ", ".join(f"{t} ({p})" for t, p in self.missing)
        super().__init__(
            f"{len(self.missing)} programs not found: {tools}: "
            f"install them with `apt install {' '.join(packages)}`"
        )


class MasterUnreachableError(BrambleError):
    """The CLI could not talk to a running master."""
