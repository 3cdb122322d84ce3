"""The unprivileged account that job drivers and Dask workers run as.

Jobs run arbitrary code: never as root. A process of bramble's started as root (the master
service, the lab, `bramble worker` from its unit) runs that code as the system user
``bramble`` instead, creating it on first use (a system account with no home, no shell and
no password, as `useradd --system` makes it). Started as anyone else, the code simply runs as
that user: it is already unprivileged.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass

from bramble.errors import BrambleError

log = logging.getLogger(__name__)

USER = "bramble"
NOLOGIN = ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")


class AccountError(BrambleError):
    """Jobs cannot run without privileges here (no such user, and it cannot be made)."""


@dataclass(frozen=True, slots=True)
class Account:
    """Who job code runs as."""

    name: str
    uid: int
    gid: int

    def env(self) -> dict[str, str]:
        """HOME, USER and LOGNAME for this account (its home may not exist: Dask copes)."""
        try:
            home = pwd.getpwuid(self.uid).pw_dir or "/"
        except KeyError:
            home = "/"
        return {"HOME": home, "USER": self.name, "LOGNAME": self.name}


_lock = threading.Lock()
_checked: set[Account] = set()


def job_account(name: str = USER) -> Account | None:
    """The account to run job code as: NAME when this process is root, else None (ourselves).

    The user NAME is created when missing; AccountError says why if it cannot be, or if the
    Python running bramble is not readable by it (installed under a private home, say).
    """
    if os.geteuid() != 0:
        return None
    with _lock:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = _create(name)
    if entry.pw_uid == 0:
        raise AccountError(f"the user '{name}' has uid 0: give it an ordinary uid")
    account = Account(name, entry.pw_uid, entry.pw_gid)
    _check_runs(account)
    return account


def _create(name: str) -> pwd.struct_passwd:
    useradd = shutil.which("useradd") or shutil.which("adduser")
    if useradd is None:
        raise AccountError(
            f"no user '{name}' to run jobs as, and no useradd to create it "
            f"(create a system user '{name}' with no login)"
        )
    shell = next((s for s in NOLOGIN if os.path.exists(s)), "/bin/false")
    if useradd.endswith("useradd"):
        args = [useradd, "--system", "--user-group", "--no-create-home"]
        args += ["--home-dir", "/nonexistent", "--shell", shell, name]
    else:  # busybox adduser
        args = [useradd, "-S", "-D", "-H", "-h", "/nonexistent", "-s", shell, name]
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AccountError(
            f"cannot create the user '{name}' to run jobs as: "
            f"{result.stderr.strip() or result.returncode} "
            f"(create a system user '{name}' with no login)"
        ) from None
    log.warning("created the system user '%s' (uid %d) to run jobs as", name, entry.pw_uid)
    return entry


def _check_runs(account: Account) -> None:
    """AccountError unless ACCOUNT can run this Python and import bramble (checked once)."""
    if account in _checked:
        return
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import bramble.jobs.driver"],
            user=account.uid,
            group=account.gid,
            extra_groups=[],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **account.env()},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        failed, why = probe.returncode != 0, probe.stderr.strip()
        why = (why.splitlines() or [f"exit status {probe.returncode}"])[-1]
    except (OSError, subprocess.SubprocessError) as exc:
        failed, why = True, str(exc)
    if failed:
        raise AccountError(
            f"jobs run as the user '{account.name}', who cannot run {sys.executable} with "
            f"bramble ({why}): install bramble where every user can read it, such as "
            "/opt/bramble"
        )
    _checked.add(account)


def drop_privileges(account: Account) -> None:
    """Become ACCOUNT for good (no supplementary groups); raise if root could come back."""
    os.setgroups([])
    os.setgid(account.gid)
    os.setuid(account.uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:  # pragma: no cover - the kernel would have to ignore setuid
        raise AccountError("dropping root failed: refusing to run job code")
    os.environ.update(account.env())
