"""Silences: an admin's "I know, stop telling me" for the alerts of some rules on some nodes,
until a time. Kept in a small JSON file beside the history, so a restart keeps them.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import re
import secrets
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bramble.master.views import AlertView, SilenceView
from bramble.spec.models import Seconds

log = logging.getLogger(__name__)
MAX_SILENCES = 1000
KEEP_EXPIRED = 86400.0
"""Seconds an expired silence stays listed."""
PATTERN = r"^[A-Za-z0-9_.*?\[\]!-]{1,253}$"
Pattern = Annotated[str, Field(pattern=PATTERN)]


class SilenceRequest(BaseModel):
    """A new silence: the rules and nodes it matches (names or patterns), for how long."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rule: Pattern = Field(default="*", description="rule name or pattern ('*': every rule)")
    node: Pattern = Field(default="*", description="node name or pattern ('*': every node)")
    duration: Annotated[Seconds, Field(gt=0)] = Field(
        description="seconds, or text such as '2h' or '30m'"
    )
    comment: str = Field(default="", max_length=500)


class Silences:
    """Every silence, saved to PATH (if given) when they change."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._silences: dict[str, SilenceView] = {}

    def load(self) -> None:
        """The silences saved before (a missing or unreadable file: none)."""
        if self.path is None:
            return
        try:
            items = json.loads(self.path.read_text("utf-8"))
            loaded = [SilenceView.model_validate(item) for item in items[:MAX_SILENCES]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, ValidationError) as exc:
            log.warning("silences in %s not read (%s): starting with none", self.path, exc)
            return
        self._silences = {s.id: s for s in loaded}

    def _save(self) -> None:
        if self.path is None:
            return
        data = json.dumps([s.model_dump() for s in self._silences.values()])
        temporary = self.path.with_name(self.path.name + ".new")
        try:
            temporary.write_text(data, "utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("silences not saved to %s: %s", self.path, exc)
            with contextlib.suppress(OSError):
                temporary.unlink()

    def add(self, request: SilenceRequest, now: float) -> SilenceView:
        """A new silence from NOW; the oldest expired one makes room past MAX_SILENCES."""
        self._prune(now)
        if len(self._silences) >= MAX_SILENCES:
            raise ValueError(f"{MAX_SILENCES} silences already: expire some first")
        silence = SilenceView(
            id=secrets.token_hex(6),
            rule=request.rule,
            node=request.node,
            starts_at=now,
            ends_at=now + request.duration,
            comment=request.comment,
            active=True,
        )
        self._silences[silence.id] = silence
        self._save()
        return silence

    def expire(self, silence_id: str, now: float) -> SilenceView | None:
        """End the silence SILENCE_ID at NOW; None if there is no such silence."""
        silence = self._silences.get(silence_id)
        if silence is None or not re.fullmatch(r"[0-9a-f]{12}", silence_id):
            return None
        ended = silence.model_copy(update={"ends_at": min(silence.ends_at, now), "active": False})
        self._silences[silence_id] = ended
        self._save()
        return ended

    def matches(self, alert: AlertView, now: float) -> bool:
        """Whether an active silence matches ALERT at NOW."""
        return any(
            s.starts_at <= now < s.ends_at
            and fnmatch.fnmatchcase(alert.rule, s.rule)
            and fnmatch.fnmatchcase(alert.node, s.node)
            for s in list(self._silences.values())  # a copy: API threads read it too
        )

    def views(self, now: float) -> list[SilenceView]:
        """Every silence, active ones first, newest first."""
        self._prune(now)
        views = [s.model_copy(update={"active": s.starts_at <= now < s.ends_at})
                 for s in self._silences.values()]  # fmt: skip
        return sorted(views, key=lambda s: (not s.active, -s.starts_at))

    def _prune(self, now: float) -> None:
        gone = [k for k, s in self._silences.items() if now - s.ends_at > KEEP_EXPIRED]
        for key in gone:
            del self._silences[key]
        if gone:
            self._save()
