"""The workstation's HTTP client of one master: JSON in and out, one connection pool, our errors.

Every client command (status, top, the jobs commands) talks to the master through it, so a
master that does not answer, or answers with an error, reads the same everywhere.
"""

from __future__ import annotations

from typing import Any

import httpx

from bramble.errors import BrambleError, MasterUnreachableError


class MasterClient:
    """Requests to the master at BASE; TOKEN (the admin token) is sent with every request.

    HINT ends the message when no master answers (`, or pass --url` where that is an option).
    """

    def __init__(self, base: str, *, token: str | None = None, hint: str = "") -> None:
        self.base = base.rstrip("/")
        self.hint = hint
        self._http = httpx.Client()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __enter__(self) -> MasterClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, path: str, *, timeout: float = 30.0, **params: Any) -> Any:
        """GET PATH with query PARAMS (None values left out), as JSON."""
        query = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, timeout=timeout, params=query)

    def post(self, path: str, body: Any = None, *, timeout: float = 30.0) -> Any:
        """POST BODY as JSON to PATH; the answer as JSON."""
        return self.request("POST", path, timeout=timeout, json=body)

    def request(self, method: str, path: str, *, timeout: float = 30.0, **kwargs: Any) -> Any:
        """METHOD PATH as JSON: MasterUnreachableError if nothing answers, BrambleError with
        the master's own explanation for an error status."""
        url = self.base + path
        try:
            response = self._http.request(
                method, url, headers=self._headers, timeout=timeout, **kwargs
            )
        except httpx.HTTPError as exc:
            raise MasterUnreachableError(
                f"no master answering at {self.base} ({exc}); start one with `bramble master`"
                + self.hint
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except (ValueError, AttributeError):
                detail = response.text[:200]
            raise BrambleError(f"{method} {path}: HTTP {response.status_code}: {detail}")
        try:
            return response.json()
        except ValueError:
            raise BrambleError(f"{method} {path}: the answer is not JSON") from None
