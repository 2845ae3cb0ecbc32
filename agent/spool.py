"""A durable on-disk queue of event batches: append-only segments of framed records.

A record is MAGIC, the payload length and its CRC-32, then the payload. A record cut
short (a crash mid-write) or damaged is detected by its length or CRC and skipped,
never misread. The read position lives in a small file, replaced atomically.
"""

from __future__ import annotations

import errno
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"DP"
HEADER = struct.Struct("!2sII")  # magic, length, crc32
SEGMENT_BYTES = 8 * 1024 * 1024
_MAX_RECORD = 256 * 1024 * 1024
# A full disk or quota is a full spool, not a reason to stop probing.
FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
# Records hold container names and labels, which may carry secrets: the owner's only.
DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(directory: Path) -> None:
    """Make a directory (and its parents) that only its owner can read, also if it exists."""
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    directory.chmod(DIR_MODE)


def is_full(exc: OSError) -> bool:
    """Whether an error says that the disk or the quota is full."""
    return exc.errno in FULL


def frame(payload: bytes) -> bytes:
    """A payload as one framed record."""
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def iter_records(data: bytes, offset: int = 0) -> Iterator[tuple[bytes, int]]:
    """Whole, valid records from offset on, each with the offset just after it.

    Iteration stops at the first record that is cut short or damaged.
    """
    view = memoryview(data)
    while offset + HEADER.size <= len(data):
        magic, length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if magic != MAGIC or length > _MAX_RECORD or start + length > len(data):
            return
        payload = bytes(view[start : start + length])
        if zlib.crc32(payload) != crc:
            return
        offset = start + length
        yield payload, offset


def unframe(data: bytes) -> tuple[list[bytes], int]:
    """Read whole, valid records from the start of data; return them and the bytes used.

    Reading stops at the first record that is cut short or damaged.
    """
    records: list[bytes] = []
    used = 0
    for payload, used in iter_records(data):  # noqa: B007 - `used` is read after the loop
        records.append(payload)
    return records, used


@dataclass(frozen=True, order=True)
class Position:
    """Where a record starts: a segment number and an offset in it."""

    segment: int
    offset: int


class Spool:
    """Append records; read them from the oldest unacknowledged one; acknowledge them.

    `on_drop` is told of every record dropped unread because the spool was full, and
    returns how many items (events) it held; their total is `dropped`. A full disk (ENOSPC,
    EDQUOT) is a full spool: the oldest records go, and if none is left, the new one.
    """

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        on_drop: Callable[[bytes], int] = lambda payload: 1,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.on_drop = on_drop
        self.dropped = 0
        """Items (events) in records dropped because the spool (or its disk) was full."""
        self.disk_full = 0
        """Times a write met a full disk or quota."""
        # Whole segments are dropped: keep them small next to the bound, so that it holds.
        self.segment_bytes = min(SEGMENT_BYTES, max(4096, max_bytes // 8))
        private_dir(directory)
        self._ack_fd: int | None = None
        self._ack = self._read_ack()
        self._repair_tail()
        self._sizes = {s: self._path(s).stat().st_size for s in self._segments()}

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.seg") if p.stem.isdigit())

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}.seg"

    def _read_ack(self) -> Position:
        try:
            segment, offset = (self.directory / "ack").read_text().split()
            return Position(int(segment), int(offset))
        except (FileNotFoundError, ValueError):
            segments = self._segments()
            return Position(segments[0] if segments else 0, 0)

    def _write_ack(self, position: Position) -> None:
        # One small write in place, not a rename: acks are frequent, and a write of a few
        # bytes at offset 0 is not torn by a crash of the process.
        self._ack = position
        try:
            if self._ack_fd is None:
                self._ack_fd = os.open(self.directory / "ack", os.O_RDWR | os.O_CREAT, FILE_MODE)
            os.pwrite(self._ack_fd, f"{position.segment:020d} {position.offset:020d}\n".encode(), 0)
        except OSError as exc:
            # Unwritten, a restart sends acknowledged records again: duplicates, stored once.
            if not is_full(exc):
                raise
            self.disk_full += 1

    def close(self) -> None:
        """Close the ack file."""
        if self._ack_fd is not None:
            os.close(self._ack_fd)
            self._ack_fd = None

    def _repair_tail(self) -> None:
        # A crash mid-append leaves a partial record at the end of the last segment: cut it.
        segments = self._segments()
        if not segments:
            return
        path = self._path(segments[-1])
        data = path.read_bytes()
        _, used = unframe(data)
        if used < len(data):
            with path.open("r+b") as handle:
                handle.truncate(used)

    def size(self) -> int:
        """Bytes of records not acknowledged yet: the spool's depth."""
        return sum(
            size - (self._ack.offset if segment == self._ack.segment else 0)
            for segment, size in self._sizes.items()
            if segment >= self._ack.segment
        )

    def disk_bytes(self) -> int:
        """Bytes on disk, acknowledged records of the first segment included."""
        return sum(self._sizes.values())

    def append(self, payload: bytes) -> None:
        """Append one record; drop the oldest segments beyond max_bytes or on a full disk."""
        record = frame(payload)
        while True:
            segment = max(self._sizes, default=self._ack.segment)
            if self._sizes.get(segment, 0) >= self.segment_bytes:
                segment += 1
            try:
                self._write(segment, record)
                break
            except OSError as exc:
                if not is_full(exc):
                    raise
                self.disk_full += 1
                if not self._drop_oldest():
                    # Nothing older left to make room: this record is the one that goes.
                    self.dropped += self.on_drop(payload)
                    return
        self._sizes[segment] = self._sizes.get(segment, 0) + len(record)
        self._enforce_limit()

    def _write(self, segment: int, record: bytes) -> None:
        """Write a record at the end of a segment, whole or not at all."""
        before = self._sizes.get(segment, 0)
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
        try:
            view = memoryview(record)
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            # A part written before the disk filled would be a torn record: cut it off.
            os.ftruncate(fd, before)
            raise
        finally:
            os.close(fd)

    def _enforce_limit(self) -> None:
        while len(self._sizes) > 1 and self.disk_bytes() > self.max_bytes:
            self._drop_oldest()

    def _drop_oldest(self) -> bool:
        """Drop the oldest segment, counting its unread records; False when there is none."""
        if not self._sizes:
            return False
        oldest = min(self._sizes)
        if oldest >= self._ack.segment:
            start = self._ack.offset if oldest == self._ack.segment else 0
            data = self._path(oldest).read_bytes()
            self.dropped += sum(self.on_drop(p) for p, _ in iter_records(data, start))
        self._path(oldest).unlink(missing_ok=True)
        del self._sizes[oldest]
        if self._ack.segment <= oldest:
            self._write_ack(Position(min(self._sizes, default=oldest + 1), 0))
        return True

    def pending(self) -> Iterator[tuple[bytes, Position]]:
        """Unacknowledged records, oldest first, each with the position after it."""
        for segment in sorted(self._sizes):
            if segment < self._ack.segment:
                continue
            start = self._ack.offset if segment == self._ack.segment else 0
            try:
                with self._path(segment).open("rb") as handle:
                    handle.seek(start)
                    data = handle.read()
            except FileNotFoundError:
                continue  # dropped by the size limit since we listed it
            for payload, end in iter_records(data):
                yield payload, Position(segment, start + end)

    def ack(self, position: Position) -> None:
        """Acknowledge every record before position; delete segments wholly acknowledged."""
        self._write_ack(position)
        newest = max(self._sizes, default=position.segment)
        for segment in sorted(self._sizes):
            if segment < position.segment or (
                segment == position.segment
                and segment != newest
                and position.offset >= self._sizes[segment]
            ):
                self._path(segment).unlink(missing_ok=True)
                del self._sizes[segment]
