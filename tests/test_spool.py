"""The spool: records survive restarts; a cut or damaged tail is detected, never misread."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agent.spool import HEADER, Spool, frame, unframe

payloads = st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=12)


@given(payloads, st.data())
def test_a_truncated_tail_is_skipped_not_misread(records: list[bytes], data: st.DataObject) -> None:
    """Cut the stream anywhere: the whole records before the cut come back, nothing else."""
    stream = b"".join(frame(p) for p in records)
    cut = data.draw(st.integers(0, len(stream)))
    read, used = unframe(stream[:cut])
    assert read == records[: len(read)]
    assert used <= cut
    whole = sum(HEADER.size + len(p) for p in read)
    assert used == whole
    # Only a record cut short is missing: the next one would not fit in what is left.
    if len(read) < len(records):
        assert cut < whole + HEADER.size + len(records[len(read)])


@given(payloads, st.data())
def test_a_flipped_byte_stops_reading_at_that_record(
    records: list[bytes], data: st.DataObject
) -> None:
    """A damaged record and everything after it are not returned as data."""
    stream = bytearray(b"".join(frame(p) for p in records))
    position = data.draw(st.integers(0, len(stream) - 1))
    stream[position] ^= 0xFF
    read, _ = unframe(bytes(stream))
    starts = []
    offset = 0
    for p in records:
        starts.append(offset)
        offset += HEADER.size + len(p)
    damaged = max(i for i, start in enumerate(starts) if start <= position)
    assert read == records[: len(read)]
    assert len(read) <= damaged


def test_records_survive_a_restart_and_acks_are_kept(tmp_path: Path) -> None:
    """A new Spool on the same directory sees what the old one did not acknowledge."""
    spool = Spool(tmp_path, 1 << 20)
    for i in range(5):
        spool.append(f"record {i}".encode())
    pending = list(spool.pending())
    spool.ack(pending[1][1])  # the first two are delivered
    again = Spool(tmp_path, 1 << 20)
    assert [p for p, _ in again.pending()] == [b"record 2", b"record 3", b"record 4"]


def test_a_partial_write_at_the_end_is_cut_on_open(tmp_path: Path) -> None:
    """A crash mid-append leaves half a record; reopening drops it and appends cleanly."""
    spool = Spool(tmp_path, 1 << 20)
    spool.append(b"complete")
    segment = next(tmp_path.glob("*.seg"))
    with segment.open("ab") as handle:
        handle.write(frame(b"interrupted")[:7])
    reopened = Spool(tmp_path, 1 << 20)
    reopened.append(b"after")
    assert [p for p, _ in reopened.pending()] == [b"complete", b"after"]


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path, monkeypatch: object) -> None:
    """Past spool_max_bytes, whole old segments go, and their items are counted."""
    import agent.spool as module

    monkeypatch.setattr(module, "SEGMENT_BYTES", 1000)  # type: ignore[attr-defined]
    spool = Spool(tmp_path, 3000, on_drop=lambda payload: 2)
    for i in range(40):
        spool.append(bytes([i]) * 190)
    left = [p[0] for p, _ in spool.pending()]
    assert spool.disk_bytes() <= 3000 + 1000
    assert left == list(range(40 - len(left), 40))  # the newest are kept, in order
    assert spool.dropped == 2 * (40 - len(left))


def test_the_depth_counts_only_unacknowledged_bytes(tmp_path: Path) -> None:
    """size() is the spool's depth: acknowledged records no longer count, though still on disk."""
    spool = Spool(tmp_path, 1 << 20)
    for i in range(4):
        spool.append(b"x" * 100 + bytes([i]))
    assert spool.size() == 4 * (HEADER.size + 101)
    pending = list(spool.pending())
    spool.ack(pending[2][1])
    assert spool.size() == HEADER.size + 101
    spool.ack(pending[3][1])
    assert spool.size() == 0
    assert spool.disk_bytes() == 4 * (HEADER.size + 101)  # the live segment stays until rolled
    assert Spool(tmp_path, 1 << 20).size() == 0  # and the ack survives a restart


@given(payloads, st.data())
def test_a_spool_cut_anywhere_reopens_to_a_prefix_and_appends_cleanly(
    records: list[bytes], data: st.DataObject
) -> None:
    """Truncate the segment file at any byte: reopening yields whole records only, then new ones."""
    import tempfile

    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        spool = Spool(directory, 1 << 20)
        for payload in records:
            spool.append(payload)
        spool.close()
        segment = next(directory.glob("*.seg"))
        cut = data.draw(st.integers(0, segment.stat().st_size))
        with segment.open("r+b") as handle:
            handle.truncate(cut)
        reopened = Spool(directory, 1 << 20)
        kept = [p for p, _ in reopened.pending()]
        assert kept == records[: len(kept)]
        reopened.append(b"after the cut")
        assert [p for p, _ in reopened.pending()] == [*kept, b"after the cut"]
