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
from dataclasses import dataclass

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


def to_utf8(raw: bytes, source: str) -> Decoded:
    """Detect the encoding of ``raw`` and return its text as UTF-8 bytes.

    Raises:
        InputFileError: the file says it is UTF-8/16/32 (byte-order mark) but is damaged, or it
            holds NUL bytes without being UTF-16, i.e. it is not a text file.
    """
    for mark, encoding in BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            body = raw[len(mark) :]
            if encoding == "utf-8-sig":
                _require_utf8(body, source)
                return Decoded(body, encoding)
            return Decoded(_decode(body, encoding, source).encode("utf-8"), encoding)

    sample = raw[:SNIFF_BYTES]
    if b"\x00" in sample:
        utf16 = _utf16_without_mark(sample)
        if utf16 is None:
            raise InputFileError(
                f"{source}: this does not look like a text file (it contains NUL bytes). "
                "Export the data as CSV, Excel (.xlsx), JSON or Parquet and import that file."
            )
        return Decoded(_decode(raw, utf16, source).encode("utf-8"), utf16)

    if is_utf8(raw):
        return Decoded(raw, "utf-8")

    try:
        return Decoded(raw.decode("cp1252").encode("utf-8"), "cp1252")
    except UnicodeDecodeError:
        return Decoded(raw.decode("latin-1").encode("utf-8"), "latin-1")


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
        line = data[: exc.start].decode(encoding, errors="replace").count("\n") + 1
        label = encoding.upper().replace("-LE", "").replace("-BE", "")
        raise InputFileError(
            f"{source}: line {line}: byte 0x{data[exc.start]:02x} is not valid {label}; the file "
            f"is marked as {label} but is damaged or was saved in another encoding. " + SAVE_AS_UTF8
        ) from exc


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
