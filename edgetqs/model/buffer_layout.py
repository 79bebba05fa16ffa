"""One byte layout for a .tflite whose buffers sit after the flatbuffer (offset + size).

The TFLite converter writes a large model's buffers after the flatbuffer (savedmodel.py says why
intake asks for that layout) in the order it iterates a hash map that is seeded per process: the
same model converted twice has the same flatbuffer and the same buffers, at other offsets. The
canonical model's sha256 (recorded in model cards and score files) then changed whenever the
intake cache was cleared. The canonical layout puts the buffers in buffer-index order, each
16-byte aligned as the converter aligns them, after the flatbuffer as it was, and keeps what
follows the last buffer (the converter's zero padding).

The rewrite only patches the offset fields inside the flatbuffer (fixed-size fields: the
flatbuffer's own layout does not move) and streams the buffers from the converter's bytes, so a
file can be written without a second copy of the weights (``canonical_chunks``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

from ai_edge_litert import schema_py_generated as schema

def stored_after_flatbuffer(offset: int) -> bool:
    """A Buffer's ``offset`` field points past the flatbuffer (0: data inline or none; 1: the
    converter's placeholder for an empty buffer)."""
    return offset > 1


ALIGNMENT = 16  # the converter's own alignment of buffer data
# vtable slots of the schema's Buffer table: data (0) = 4, offset (1) = 6, size (2) = 8
_OFFSET_SLOT = 6


def _layout(raw: bytes) -> tuple[int, int, list[tuple[int, int, int]]] | None:
    """(start, end, [(offset field position, offset, size)] in buffer-index order) of the buffers
    stored after the flatbuffer; None when every buffer is inline."""
    model = schema.Model.GetRootAs(raw, 0)
    placed = []
    for index in range(model.BuffersLength()):
        buffer = model.Buffers(index)
        offset = buffer.Offset()
        if stored_after_flatbuffer(offset):
            placed.append((buffer._tab.Pos + buffer._tab.Offset(_OFFSET_SLOT), offset, buffer.Size()))
    if not placed:
        return None
    return min(o for _, o, _ in placed), max(o + s for _, o, s in placed), placed


def _canonical_offsets(start: int, placed: list[tuple[int, int, int]]) -> list[int]:
    """Where each buffer goes: index order, one region per distinct (offset, size) (a buffer the
    converter shares between entries stays shared)."""
    moved: dict[tuple[int, int], int] = {}
    cursor, offsets = start, []
    for _, offset, size in placed:
        if (offset, size) not in moved:
            cursor += -cursor % ALIGNMENT
            moved[offset, size] = cursor
            cursor += size
        offsets.append(moved[offset, size])
    return offsets


def is_canonical(raw: bytes) -> bool:
    layout = _layout(raw)
    if layout is None:
        return True
    start, _, placed = layout
    return [o for _, o, _ in placed] == _canonical_offsets(start, placed)


def canonical_chunks(raw: bytes) -> Iterator[bytes | memoryview]:
    """The canonical file's bytes, in pieces: the flatbuffer with its offsets patched, then each
    buffer as a view of ``raw`` (padding between). Concatenated they are ``canonical(raw)``."""
    layout = _layout(raw)
    if layout is None:
        yield raw
        return
    start, end, placed = layout
    offsets = _canonical_offsets(start, placed)
    head = bytearray(raw[:start])
    for (field, _, _), offset in zip(placed, offsets):
        if field + 8 > start:
            raise ValueError("a buffer offset field lies outside the flatbuffer: not a layout the converter writes")
        struct.pack_into("<Q", head, field, offset)
    yield bytes(head)
    view, cursor, written = memoryview(raw), start, set()
    for (_, offset, size), new in zip(placed, offsets):
        if new in written:
            continue
        written.add(new)
        if new > cursor:
            yield bytes(new - cursor)
        yield view[offset:offset + size]
        cursor = new + size
    yield view[end:]


def canonical(raw: bytes) -> bytes:
    """``raw`` in the canonical layout; ``raw`` itself (no copy) when it already is."""
    return raw if is_canonical(raw) else b"".join(canonical_chunks(raw))


def write_canonical(raw: bytes, path: Path) -> None:
    """``raw`` written to ``path`` in the canonical layout, streamed: no second copy of the weights."""
    with open(path, "wb") as out:
        for chunk in canonical_chunks(raw):
            out.write(chunk)
