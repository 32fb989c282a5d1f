"""What a PDF's streams inflate to, checked before PDFium or pypdf parses a byte of them.

PDFium has no limit of its own: a 1.17 MB PDF whose one content stream inflates to
1.2 GB was indexed as a success and cost +2.17 GB of RSS. Measured here, PDFium's peak
while it reads a page is about twice the page's decoded content stream (200 MB of
spaces: +402 MB), so a stream may decode to at most `MAX_STREAM_BYTES` (64 MB, ~130 MB
of RSS; the densest real page seen, a map, is under 10 MB) and all of a file's streams
together to `MAX_TOTAL_BYTES`. Image streams that PDFium decodes itself (JPEG, JPEG
2000, fax, JBIG2) are held to `MAX_IMAGE_PIXELS` by the size they declare, since
rendering one for OCR allocates every pixel.

The check walks the raw bytes for `stream` keywords (streams never sit inside object
streams, so all are found, compressed object streams included) and inflates each
FlateDecode one through a counter, a megabyte at most at a time, keeping nothing: the
nine R manuals (16 MB, 53 MB decoded) take 1.2 s in all, fullrefman (6 MB) 0.5 s, and the
bomb is refused after 0.3 s. A stream zlib cannot inflate is left to the parsers, which
report damage themselves.

LZWDecode streams (rare since PDF 1.2, but PDFium and pypdf decode them whole, with no
limit either) are measured the same way without being decoded: an LZW code stands for a
table entry one byte longer than the entry before it, so the decoded size needs only
each entry's length, never its bytes. That walk is Python, 1.0 s a megabyte of LZW data
(the R manuals' text, encoded by pypdf), and a bomb is refused within its first 60 KB: a
12-bit code decodes to at most 3,840 bytes, and each to one more than the one before.
"""

from __future__ import annotations

import re
import zlib

MAX_STREAM_BYTES = 64 << 20
MAX_TOTAL_BYTES = 1 << 30
MAX_IMAGE_PIXELS = 100_000_000  # a 600 dpi A3 scan is 70 million
_PIECE = 1 << 20
_FIRST_PIECE = 16 << 10
_DICT_WINDOW = 4096  # bytes before "stream" searched for its dictionary
_STREAM = re.compile(rb">>\s*stream(?:\r\n|\n|\r)")
_FLATE = re.compile(rb"/Filter\s*\[?\s*/(?:FlateDecode|Fl)\b")
_LZW = re.compile(rb"/Filter\s*\[?\s*/(?:LZWDecode|LZW)\b")
_EARLY_CHANGE_OFF = re.compile(rb"/EarlyChange\s+0\b")
_LENGTH = re.compile(rb"/Length\s+(\d{1,12})\b(?!\s+\d+\s+R)")  # direct, not "5 0 R"
_END = b"endstream"
_CLEAR, _EOD, _FIRST_CODE, _MAX_CODES = 256, 257, 258, 4096
_IMAGE = re.compile(rb"/Subtype\s*/Image\b")
_WIDTH = re.compile(rb"/Width\s+(\d{1,12})\b")
_HEIGHT = re.compile(rb"/Height\s+(\d{1,12})\b")


class StreamTooLarge(Exception):
    """A stream (or the streams together) decode past the limits; the message says which."""


def check_streams(data: bytes) -> int:
    """The decoded size of the file's Flate and LZW streams; raises StreamTooLarge past a
    limit."""
    total = 0
    for match in _STREAM.finditer(data):
        start = match.end()
        head = data[max(0, match.start() - _DICT_WINDOW) : match.start()]
        head = head[head.rfind(b"obj") + 3 :] if b"obj" in head else head
        if _IMAGE.search(head):
            _check_image(head)
        limit = min(MAX_STREAM_BYTES, MAX_TOTAL_BYTES - total)
        if _FLATE.search(head):
            total += _inflated_size(data, start, limit)
        elif _LZW.search(head):
            early = 0 if _EARLY_CHANGE_OFF.search(head) else 1
            total += _lzw_size(data, start, _stream_end(data, start, head), limit, early)
    return total


def _check_image(head: bytes) -> None:
    width, height = _WIDTH.search(head), _HEIGHT.search(head)
    if width and height and int(width.group(1)) * int(height.group(1)) > MAX_IMAGE_PIXELS:
        raise StreamTooLarge(
            f"an image in it claims {int(width.group(1)):,} x {int(height.group(1)):,} "
            f"pixels, more than the {MAX_IMAGE_PIXELS // 1_000_000} million Parley decodes"
        )


def _inflated_size(data: bytes, start: int, limit: int) -> int:
    """Bytes the zlib stream at `start` inflates to, stopping once past `limit`."""
    inflater = zlib.decompressobj()
    view = memoryview(data)
    size, position, piece = 0, start, _FIRST_PIECE  # most streams are a few KB
    try:
        while not inflater.eof:
            if inflater.unconsumed_tail:
                chunk = inflater.unconsumed_tail
            elif position < len(data):
                chunk, position = view[position : position + piece], position + piece
                piece = min(piece * 4, _PIECE)
            else:
                break
            size += len(inflater.decompress(chunk, _PIECE))
            if size > limit:
                raise StreamTooLarge(_too_large(limit))
    except zlib.error:
        pass  # damaged or not really Flate: PDFium and pypdf judge it
    return size


def _stream_end(data: bytes, start: int, head: bytes) -> int:
    """Where the stream's data ends: by its /Length when that is a number (an "endstream"
    inside the data must not cut the count short), else at the next "endstream"."""
    length = _LENGTH.search(head)
    if length and start + int(length.group(1)) <= len(data):
        return start + int(length.group(1))
    end = data.find(_END, start)
    return len(data) if end < 0 else end


def _lzw_size(data: bytes, start: int, end: int, limit: int, early: int) -> int:
    """Bytes the LZW stream in `data[start:end]` decodes to (PDF's LZWDecode: 9- to 12-bit
    codes, most significant bit first, the width growing `early` codes early), stopping
    once past `limit`; a damaged stream stops the count, for the parsers to judge."""
    lengths = [1] * _FIRST_CODE  # each table entry's decoded length; 256, 257 unused
    width, previous, size, buffer, bits = 9, 0, 0, 0, 0
    for byte in memoryview(data)[start:end]:
        buffer, bits = (buffer << 8 | byte) & 0xFFFFFF, bits + 8
        while bits >= width:
            bits -= width
            code = buffer >> bits & ((1 << width) - 1)
            if code == _CLEAR:
                del lengths[_FIRST_CODE:]
                width, previous = 9, 0
                continue
            if code == _EOD or (code >= len(lengths) and not previous):
                return size
            # A code past the table is read as the previous entry plus a byte, as PDFium
            # and pypdf read it (only the next code is valid, but both take any).
            length = lengths[code] if code < len(lengths) else previous + 1
            if previous and len(lengths) < _MAX_CODES:
                lengths.append(previous + 1)  # the previous entry and this one's first byte
            if len(lengths) + early >= 1 << width and width < 12:
                width += 1
            size, previous = size + length, length
            if size > limit:
                raise StreamTooLarge(_too_large(limit))
    return size


def _too_large(limit: int) -> str:
    if limit < MAX_STREAM_BYTES:
        return f"its streams inflate to more than {MAX_TOTAL_BYTES >> 20:,} MB in all"
    return f"a stream in it inflates to more than {MAX_STREAM_BYTES >> 20} MB"
