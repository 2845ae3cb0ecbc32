"""A durable on-disk queue of event batches: append-only segments of framed records.

A record is MAGIC, the payload length and its CRC-32, then the payload. A record cut
short (a crash mid-write) or damaged is detected by its length or CRC and skipped,
never misread. The read position lives in a small file, replaced atomically.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"DP"
HEADER = struct.Struct("!2sII")  # magic, length, crc32
SEGMENT_BYTES = 8 * 1024 * 1024
_MAX_RECORD = 256 * 1024 * 1024


def frame(payload: bytes) -> bytes:
    """A payload as one framed record."""
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def unframe(data: bytes) -> tuple[list[bytes], int]:
    """Read whole, valid records from the start of data; return them and the bytes used.

    Reading stops at the first record that is cut short or damaged.
    """
    records: list[bytes] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, length, crc = HEADER.unpack_from(data, offset)
        start = offset + HEADER.size
        if magic != MAGIC or length > _MAX_RECORD or start + length > len(data):
            break
        payload = data[start : start + length]
        if zlib.crc32(payload) != crc:
            break
        records.append(payload)
        offset = start + length
    return records, offset


@dataclass(frozen=True)
class Position:
    """Where a record starts: a segment number and an offset in it."""

    segment: int
    offset: int


class Spool:
    """Append records; read them from the oldest unacknowledged one; acknowledge them."""

    def __init__(
        self, directory: Path, max_bytes: int, count: Callable[[bytes], int] = lambda payload: 1
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.count = count
        self.dropped = 0
        """Items (events) in records dropped because the spool was full."""
        directory.mkdir(parents=True, exist_ok=True)
        self._ack = self._read_ack()
        self._repair_tail()

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
        tmp = self.directory / "ack.tmp"
        tmp.write_text(f"{position.segment} {position.offset}\n")
        tmp.replace(self.directory / "ack")
        self._ack = position

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
        """Bytes on disk, acknowledged records of the first segment included."""
        return sum(self._path(s).stat().st_size for s in self._segments())

    def append(self, payload: bytes) -> None:
        """Append one record; drop the oldest segments beyond max_bytes."""
        segments = self._segments()
        segment = segments[-1] if segments else self._ack.segment
        path = self._path(segment)
        if path.exists() and path.stat().st_size >= SEGMENT_BYTES:
            segment += 1
            path = self._path(segment)
        with path.open("ab") as handle:
            handle.write(frame(payload))
        self._enforce_limit()

    def _enforce_limit(self) -> None:
        segments = self._segments()
        while len(segments) > 1 and self.size() > self.max_bytes:
            oldest = segments.pop(0)
            if oldest >= self._ack.segment:
                dropped, _ = unframe(
                    self._path(oldest).read_bytes()[
                        self._ack.offset if oldest == self._ack.segment else 0 :
                    ]
                )
                self.dropped += sum(self.count(payload) for payload in dropped)
            self._path(oldest).unlink(missing_ok=True)
            if self._ack.segment <= oldest:
                self._write_ack(Position(segments[0], 0))

    def pending(self) -> Iterator[tuple[bytes, Position]]:
        """Unacknowledged records, oldest first, each with the position after it."""
        for segment in self._segments():
            if segment < self._ack.segment:
                continue
            start = self._ack.offset if segment == self._ack.segment else 0
            data = self._path(segment).read_bytes()[start:]
            records, _ = unframe(data)
            offset = start
            for payload in records:
                offset += HEADER.size + len(payload)
                yield payload, Position(segment, offset)

    def ack(self, position: Position) -> None:
        """Acknowledge every record before position; delete segments wholly acknowledged."""
        self._write_ack(position)
        segments = self._segments()
        for segment in segments:
            path = self._path(segment)
            if segment < position.segment or (
                segment == position.segment
                and segment != segments[-1]
                and position.offset >= path.stat().st_size
            ):
                path.unlink(missing_ok=True)
