"""Turn a text file's bytes into UTF-8, whatever the spreadsheet program saved it as.

Excel saves "CSV UTF-8" with a byte-order mark, "Unicode text" as UTF-16, and plain "CSV" in the
machine's legacy code page. Readers downstream (polars, json) want UTF-8, so every text format goes
through ``to_utf8`` first. Nothing is decoded with ``errors="replace"``.

Text that is not UTF-8 is read as cp1252 (what Excel writes on Western Windows machines), or
latin-1 where cp1252 leaves a byte undefined. Guessing other legacy code pages (cp1251,
Shift-JIS) from a sample proved unreliable (charset-normalizer took short cp1251 files for
Shift-JIS and cp1252 names for GB18030), and a wrong guess garbles every name silently, so the
docs ask for UTF-8 for non-Latin scripts instead.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from bulk_pipeline.ingest.table import InputFileError

BYTE_ORDER_MARKS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
"""Checked in this order: the UTF-32 LE mark starts with the UTF-16 LE one."""

SNIFF_BYTES = 64 * 1024

SAVE_AS_UTF8 = "Save the file as UTF-8 (in Excel: Save As > CSV UTF-8) and import it again."


@dataclass(frozen=True)
class Decoded:
    data: bytes
    """The text as UTF-8, without a byte-order mark."""
    encoding: str
    """The encoding the file was read with (a Python codec name)."""


@dataclass(frozen=True)
class DecodedBlocks:
    blocks: Iterator[bytes]
    """The text as UTF-8, a block at a time, without a byte-order mark; a block may end inside
    a character (the next one finishes it), never inside a line ending's LF byte."""
    encoding: str


def to_utf8(raw: bytes, source: str) -> Decoded:
    """Detect the encoding of ``raw`` and return its text as UTF-8 bytes.

    Raises:
        InputFileError: the file says it is UTF-8/16/32 (byte-order mark) but is damaged, or it
            holds NUL bytes without being UTF-16, i.e. it is not a text file.
    """
    marked = _marked_encoding(raw[:SNIFF_BYTES], source)
    if marked is not None:
        encoding, skip = marked
        body = raw[skip:]
        if encoding == "utf-8-sig":
            _require_utf8(body, source)
            return Decoded(body, encoding)
        return Decoded(_decode(body, encoding, source).encode("utf-8"), encoding)
    if is_utf8(raw):
        return Decoded(raw, "utf-8")
    try:
        return Decoded(raw.decode("cp1252").encode("utf-8"), "cp1252")
    except UnicodeDecodeError:
        return Decoded(raw.decode("latin-1").encode("utf-8"), "latin-1")


def utf8_blocks(path: Path, source: str, block_bytes: int) -> DecodedBlocks:
    """The file's text as UTF-8 in blocks of about ``block_bytes``, decided as ``to_utf8``
    decides but without holding the file: a file without a byte-order mark is first checked
    for UTF-8 a block at a time (Arrow's check, ~5 GB/s), then read as UTF-8, cp1252 or
    latin-1.

    Raises:
        InputFileError: as ``to_utf8``; a damaged UTF-16 or UTF-32 file when the block holding
            the damage is read.
    """
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    marked = _marked_encoding(head, source)
    if marked is not None:
        encoding, skip = marked
        if encoding == "utf-8-sig":
            _require_utf8_file(path, skip, source, block_bytes)
            return DecodedBlocks(_file_blocks(path, skip, block_bytes), encoding)
        return DecodedBlocks(_decoded_blocks(path, skip, encoding, source, block_bytes), encoding)
    if _utf8_file(path, block_bytes):
        return DecodedBlocks(_file_blocks(path, 0, block_bytes), "utf-8")
    encoding = "cp1252" if _decodes(path, "cp1252", block_bytes) else "latin-1"
    return DecodedBlocks(_decoded_blocks(path, 0, encoding, source, block_bytes), encoding)


def _marked_encoding(head: bytes, source: str) -> tuple[str, int] | None:
    """The encoding a byte-order mark (or UTF-16's NUL bytes) declares, and the bytes to skip;
    None for text to be told apart as UTF-8 or a legacy code page."""
    for mark, encoding in BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return encoding, len(mark)
    if b"\x00" in head:
        utf16 = _utf16_without_mark(head)
        if utf16 is None:
            raise InputFileError(
                f"{source}: this does not look like a text file (it contains NUL bytes). "
                "Export the data as CSV, Excel (.xlsx), JSON or Parquet and import that file."
            )
        return utf16, 0
    return None


def _file_blocks(path: Path, skip: int, block_bytes: int) -> Iterator[bytes]:
    with path.open("rb") as handle:
        handle.seek(skip)
        yield from iter(lambda: handle.read(block_bytes), b"")


def _whole_characters(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """UTF-8 blocks that end on a character boundary: a multi-byte sequence the block may
    end inside (its lead byte and what follows, at most 3 bytes) is carried into the next."""
    carry = b""
    for block in blocks:
        data = carry + block
        lead = len(data) - 1
        while lead > 0 and data[lead] & 0xC0 == 0x80 and len(data) - lead < 4:
            lead -= 1
        cut = lead if lead >= 0 and data[lead] >= 0xC0 else len(data)
        if cut:
            yield data[:cut]
        carry = data[cut:]
    if carry:
        yield carry


def _utf8_file(path: Path, block_bytes: int) -> bool:
    return all(is_utf8(block) for block in _whole_characters(_file_blocks(path, 0, block_bytes)))


def _require_utf8_file(path: Path, skip: int, source: str, block_bytes: int) -> None:
    """A file marked UTF-8 must be UTF-8; the error names the line of the first bad byte."""
    lines = 0
    for block in _whole_characters(_file_blocks(path, skip, block_bytes)):
        if not is_utf8(block):
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise _undecodable(block, exc, "utf-8", source, lines) from exc
        lines += block.count(b"\n")


def _decodes(path: Path, encoding: str, block_bytes: int) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        for block in _file_blocks(path, 0, block_bytes):
            decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _decoded_blocks(
    path: Path, skip: int, encoding: str, source: str, block_bytes: int
) -> Iterator[bytes]:
    decoder = codecs.getincrementaldecoder(encoding)()
    lines = 0
    blocks = _file_blocks(path, skip, block_bytes)
    for block, final in _with_last(blocks):
        try:
            text = decoder.decode(block, final=final)
        except UnicodeDecodeError as exc:
            raise _undecodable(exc.object, exc, encoding, source, lines) from exc
        lines += text.count("\n")
        yield text.encode("utf-8")


def _with_last(blocks: Iterator[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Each block, and whether it is the last (an empty file gives one empty last block)."""
    previous = next(blocks, b"")
    for block in blocks:
        yield previous, False
        previous = block
    yield previous, True


def is_utf8(data: bytes) -> bool:
    """Validate UTF-8 without building a Python string (Arrow's SIMD check, ~5 GB/s)."""
    offsets = pa.py_buffer(struct.pack("<qq", 0, len(data)))
    array = pa.Array.from_buffers(pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)])
    try:
        array.view(pa.large_string()).validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _require_utf8(data: bytes, source: str) -> None:
    if not is_utf8(data):
        _decode(data, "utf-8", source)


def _decode(data: bytes, encoding: str, source: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(data, exc, encoding, source) from exc


def _undecodable(
    data: bytes, exc: UnicodeDecodeError, encoding: str, source: str, lines_before: int = 0
) -> InputFileError:
    """The error for a file marked as ``encoding`` whose ``data`` (after ``lines_before``
    lines) does not decode."""
    line = lines_before + data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
    label = encoding.upper().replace("-LE", "").replace("-BE", "")
    bad = data[exc.start] if exc.start < len(data) else 0
    return InputFileError(
        f"{source}: line {line}: byte 0x{bad:02x} is not valid {label}; the file "
        f"is marked as {label} but is damaged or was saved in another encoding. " + SAVE_AS_UTF8
    )


def _utf16_without_mark(sample: bytes) -> str | None:
    """UTF-16 saved without a byte-order mark shows as a NUL byte beside every ASCII character."""
    pairs = len(sample) // 2
    if pairs == 0:
        return None
    even_nuls = sample[0 : pairs * 2 : 2].count(0)
    odd_nuls = sample[1 : pairs * 2 : 2].count(0)
    if odd_nuls > pairs * 0.3 and even_nuls < pairs * 0.05:
        return "utf-16-le"
    if even_nuls > pairs * 0.3 and odd_nuls < pairs * 0.05:
        return "utf-16-be"
    return None
