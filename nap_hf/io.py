"""Atomic file writes shared by the package: a file is written next to its final place, then swapped in with
`os.replace`, so a reader (or a killed job) never sees a half-written file. And the one resumable,
shard-mergeable JSON-lines store (:class:`JsonlStore`) of the evaluation runner and the data builder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "write_text_atomic",
    "save_figure_atomic",
    "fsync_dir",
    "replace_dir",
    "exclusive_lock",
    "read_jsonl",
    "write_jsonl_atomic",
    "JsonlAppender",
    "Shard",
    "JsonlStore",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` (ordinary permissions), on error it
    is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
    """Write `text` (UTF-8) atomically; `fsync=True` also flushes it to disk before the swap."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if fsync:
            f.flush()
            os.fsync(f.fileno())


def save_figure_atomic(fig: Any, path: str | os.PathLike, dpi: int = 150) -> Path:
    """`fig.savefig` atomically, in the format named by the suffix (PNG by default)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path, suffix=f".tmp.{fmt}") as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a folder's entries (a rename into it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def replace_dir(staging: str | os.PathLike, final: str | os.PathLike) -> Path:
    """Swap the finished folder `staging` in as `final` (the previous `final`, if any, is moved aside first and
    removed after), so a reader sees the old folder or the new one, never a mix."""
    staging, final = Path(staging), Path(final)
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(staging, final)
    fsync_dir(final.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return final


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, hint: str = "") -> Iterator[None]:
    """Hold an `flock` on `path` (created if missing) for the block; raise RuntimeError (with `hint`, the fix)
    when another process holds it. Without `fcntl` (Windows) nothing is locked."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - no flock (Windows): one writer is the user's job
            pass
        except OSError as e:
            raise RuntimeError(f"{path} is locked by another process; {hint}".rstrip("; ")) from e
        yield
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------------ JSON lines
def _json_line(record: Any) -> str:
    return json.dumps(record, ensure_ascii=False) + "\n"


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records (JSON objects) of a JSON-lines file, [] when it does not exist; a line that is not a JSON
    object (a write cut by a crash) is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
    return out


def write_jsonl_atomic(path: str | os.PathLike, records: Iterable[Any], *, fsync: bool = True) -> Path:
    """Write `records` (any iterable, streamed) as JSON lines, atomically; `fsync=True` flushes the file to disk
    before the swap and the folder after it."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in records:
            f.write(_json_line(record))
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    if fsync:
        fsync_dir(path.parent)
    return path


class JsonlAppender:
    """Append JSON lines durably: each line is written, flushed and fsync'ed before the next. A partial last
    line left by a crash is cut first, so the appended lines start on a line of their own."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, record: Any) -> None:
        self._f.write(_json_line(record))
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _repair_tail(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        f.truncate(data.rfind(b"\n") + 1)


@dataclass(frozen=True)
class Shard:
    """One shard file read back: its header (None for a store without headers, or an unreadable one), its
    records, and whether it is complete (its header's ``num_records`` matches; always True without headers)."""

    path: Path
    header: dict[str, Any] | None
    records: list[dict[str, Any]]
    complete: bool


class JsonlStore:
    """The records of one resumable job as JSON lines in ``folder``: shards ``<stem><sep><tag>.jsonl`` and,
    once merged, ``<stem>.jsonl``. Used by the evaluation runner (one shard per process, appended line by
    line; merged in example order at the end of a run) and the data builder (numbered shards written whole,
    each with a header line).

    * Atomic: a shard written whole (:meth:`write_shard`) or the merged file appears complete or not at all
      (written next to its place, fsync'ed, renamed); appended lines (:meth:`appender`) are fsync'ed one by
      one and a line cut by a crash is dropped on reading.
    * Resumable: :meth:`records` reads everything on disk (merged file first, then the shards in tag order),
      so a restarted job skips what is done. With ``header=True`` every shard starts with a header line that
      carries ``num_records``, so a shard is recognisably complete (:attr:`Shard.complete`).
    * Shard-mergeable: :meth:`merge` writes the merged file (one record per key, the first found, in the
      given order) and removes the shards.
    """

    def __init__(self, folder: str | os.PathLike, stem: str, *, sep: str = ".", header: bool = False):
        self.folder, self.stem, self.sep, self.header = Path(folder), stem, sep, header

    @property
    def merged_path(self) -> Path:
        return self.folder / f"{self.stem}.jsonl"

    def shard_path(self, tag: str) -> Path:
        return self.folder / f"{self.stem}{self.sep}{tag}.jsonl"

    def tag_of(self, path: Path) -> str:
        return path.name[len(self.stem) + len(self.sep) : -len(".jsonl")]

    def shard_paths(self) -> list[Path]:
        """The shard files, in tag order."""
        if not self.folder.is_dir():
            return []
        prefix, suffix = f"{self.stem}{self.sep}", ".jsonl"
        return sorted(
            p
            for p in self.folder.iterdir()
            if p.name.startswith(prefix) and p.name.endswith(suffix) and len(p.name) > len(prefix + suffix)
        )

    def read_shard(self, path: str | os.PathLike) -> Shard:
        lines = read_jsonl(path)
        if not self.header:
            return Shard(Path(path), None, lines, True)
        head = lines[0] if lines else None
        records = lines[1:]
        complete = head is not None and head.get("num_records") == len(records)
        return Shard(Path(path), head, records, complete)

    def records(self) -> list[dict[str, Any]]:
        """Every record on disk: the merged file's, then each shard's (headers left out)."""
        out = read_jsonl(self.merged_path)
        for path in self.shard_paths():
            out += self.read_shard(path).records
        return out

    def appender(self, tag: str) -> JsonlAppender:
        """A durable line-by-line writer of shard ``tag`` (appending to what it holds)."""
        return JsonlAppender(self.shard_path(tag))

    def write_shard(self, tag: str, records: Sequence[Any], header: Mapping[str, Any] | None = None) -> Path:
        """Write shard ``tag`` whole, atomically (fsync'ed); with ``header=True`` its first line is ``header``
        plus ``num_records``."""
        lines: list[Any] = list(records)
        if self.header:
            lines.insert(0, {**(header or {}), "num_records": len(records)})
        self.folder.mkdir(parents=True, exist_ok=True)
        return write_jsonl_atomic(self.shard_path(tag), lines)

    def merge(
        self, key: str = "id", order: Callable[[dict[str, Any]], Any] | None = None
    ) -> list[dict[str, Any]]:
        """Write every record (the first found per ``key``), sorted by ``order``, as the merged file
        (atomically), remove the shards, and return the merged records."""
        seen: dict[Any, dict[str, Any]] = {}
        for record in self.records():
            seen.setdefault(record[key], record)
        merged = sorted(seen.values(), key=order) if order is not None else list(seen.values())
        write_jsonl_atomic(self.merged_path, merged)
        for path in self.shard_paths():
            path.unlink()
        return merged

    def remove_partial_writes(self) -> None:
        """Remove the temporary files of writes killed before their rename."""
        if self.folder.is_dir():
            for tmp in self.folder.glob(f".{self.stem}{self.sep}*"):
                tmp.unlink(missing_ok=True)

    def clear(self) -> None:
        """Remove the merged file, every shard and any temporary file."""
        self.remove_partial_writes()
        for path in [self.merged_path, *self.shard_paths()]:
            path.unlink(missing_ok=True)
