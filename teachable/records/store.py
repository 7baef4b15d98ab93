"""Artifact files that survive a kill: atomic JSON writes and append-only JSONL logs.

A JSON file is written to a temporary file beside it and renamed over the old one, so a reader
sees the old or the new content, never half of it. A JSONL log gains one flushed, fsynced line
per row; a kill mid-write can leave only a truncated last line, which `read_jsonl` ignores and
the next `append_jsonl` cuts off. A file that does not parse is a `BadFile` error naming its
path and the line where the parser stopped.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO


class BadFile(ValueError):
    """A file the workbench reads does not parse; the message names its path and line."""


def write_json(path: str | Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically (temporary file, then `os.replace`)."""
    _write_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Replace a JSONL log with `rows`, atomically: a rewrite never leaves half a log."""
    _write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def _write_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_json(path: str | Path) -> Any:
    """Read one JSON document; one that does not parse is a `BadFile` naming path and line."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise BadFile(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
        ) from None
    except UnicodeDecodeError:
        raise BadFile(f"{path} is not valid JSON (not UTF-8 text)") from None


def append_jsonl(path: str | Path, row: dict) -> None:
    """Append one row as a line, flushed and fsynced so it survives a kill right after."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+b") as file:
        _drop_truncated_tail(file)
        file.write(json.dumps(row).encode() + b"\n")
        file.flush()
        os.fsync(file.fileno())


def _drop_truncated_tail(file: BinaryIO) -> None:
    """Cut a last line that lacks its newline (a kill mid-write) so the next row stands alone."""
    end = file.seek(0, os.SEEK_END)
    if end == 0:
        return
    file.seek(end - 1)
    if file.read(1) == b"\n":
        return
    file.seek(0)
    file.truncate(file.read().rfind(b"\n") + 1)


def read_jsonl(path: str | Path) -> list[dict]:
    """All complete rows of a JSONL log. A row is complete once its newline is written, so a
    last line without one (a kill mid-write) is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        complete = path.read_text().rpartition("\n")[0]
    except UnicodeDecodeError:
        raise BadFile(f"{path} is not valid JSONL (not UTF-8 text)") from None
    rows = []
    for number, line in enumerate(complete.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise BadFile(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    return rows
