"""One run per run folder: an exclusive lock that names its holder.

A run holds `runs/<run>/run.lock` from start to end: an `fcntl.flock` on the file, which the
operating system releases when the process ends however it ends (a crash, a SIGKILL), and in
the file the holder's pid, host, command and start time. A second run on the same folder stops
at once and names the holder. A lock file that names a holder but is not locked was left by a
process that died without clearing it; the next run takes it over and says so. After a run the
file stays, emptied: deleting it would let two processes lock two different files of one name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path


class FolderBusy(RuntimeError):
    """Another process holds the folder's lock; the message names it."""


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: process id, host, command line and since when."""

    pid: int
    host: str
    command: str
    since: str

    @classmethod
    def me(cls) -> Holder:
        """This process: `python -m teachable ...` reads as `teachable ...`."""
        program = Path(sys.argv[0]).name if sys.argv else ""
        if program == "__main__.py":
            program = "teachable"
        return cls(
            pid=os.getpid(),
            host=socket.gethostname(),
            command=" ".join([program, *sys.argv[1:]]),
            since=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, since {self.since} ({self.command})"


def _read(fd: int) -> Holder | None:
    """The holder the open lock file names; None when it is empty or unreadable."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode(errors="replace").strip()
    if not text:
        return None
    try:
        return Holder(**json.loads(text))
    except (ValueError, TypeError):
        return Holder(pid=-1, host="?", command=f"unreadable lock file: {text[:80]!r}", since="?")


def _write(fd: int, holder: Holder | None) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    if holder is not None:
        os.write(fd, (json.dumps(asdict(holder)) + "\n").encode())
    os.fsync(fd)


def running_holder(path: Path) -> Holder | None:
    """The live process on this host the lock file at `path` names, read without locking:
    None when the file is missing or empty, or names a process that is gone."""
    path = Path(path)
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        named = _read(fd)
    finally:
        os.close(fd)
    if named is None or named.pid <= 0 or named.host != socket.gethostname():
        return None
    try:
        os.kill(named.pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, under another user
        pass
    return named


@contextmanager
def hold_lock(
    path: Path, note: Callable[[str], None] = lambda text: print(text, file=sys.stderr)
) -> Iterator[Holder]:
    """Hold the lock file `path` (its folder is created) for the `with` block; released on
    exit and on exceptions. Raises `FolderBusy` at once when another process holds it; a lock
    left by a dead process is taken over, with a `note`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            who = holder.describe() if holder else "a process that has not yet written its name"
            raise FolderBusy(
                f"{path.parent} is in use by another run: {who}. One run per run folder: wait "
                f"for it to finish, or stop it; the lock is {path}"
            ) from None
        left = _read(fd)
        if left is not None:
            note(
                f"note: {path} was left by {left.describe()}, which is no longer running "
                "(killed?); this run takes it over"
            )
        me = Holder.me()
        _write(fd, me)
        try:
            yield me
        finally:
            _write(fd, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
