"""The ZIP guard for DOCX, PPTX, XLSX, EPUB and ODT, and what a ZIP or OLE file really is.

Every ZIP-based upload is checked from its central directory before any entry is
inflated: at most `MAX_MEMBERS` entries, at most `MAX_EXPANDED` bytes once unpacked in
all (overlapping entries, the "better zip bomb", count once per entry, so they add up
too), no encrypted entries. An entry can still lie: declare its real part's size and
hold far more. `zipfile` returns no more than the declared size and then fails the CRC
check, but `read()` without a size inflates all of the entry's compressed bytes at once
first (64 MB of padding behind a declared 1.5 KB: 141 MB at the peak, measured with
tracemalloc; deflate packs 1,000:1, so a 50 MB upload could ask for 50 GB). So nothing
here reads an entry in one go (`read_member` inflates 1 MB at a time, 2 MB at the peak
for the same entry), and no library is given the original archive: `stored_copy`
re-packs the entries inflated here, within the limits, uncompressed, for python-docx and
python-pptx (which call `ZipFile.read`) and calamine (Rust, which trusts the stream).

A 1 MB file that would unpack to 1 GB is refused with a message that says so; nothing is
inflated to find out. 256 MB unpacked is far more than any real document's text (the R
manuals' 3,300 pages are 8 MB of text), and a DOCX's XML tree costs python-docx about
4-5x its size in memory, which keeps one file under the 500 MB budget of issue 13.

Password-protected Office files (DOCX, XLSX, PPTX) are not ZIPs at all: Office wraps the
encrypted package in an OLE compound file with an `EncryptedPackage` stream, the same
container as the old .doc/.xls/.ppt formats, which are told apart by their stream names.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable

from lib.errors import EncryptedDocument, UnreadableDocument

MAX_MEMBERS = 10_000
MAX_EXPANDED = 256 * 1024 * 1024
BOMB_RATIO = 100  # unpacked/packed above this, an oversized archive is called a zip bomb
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_SMALL_PART = 1024 * 1024  # [Content_Types].xml, mimetype, container.xml and such
_CHUNK = 1024 * 1024  # inflated at a time: zipfile inflates no more than it is asked for

_OOXML = [  # main part content types the readers take → kind (python-docx reads only
    # documents, not templates or macro-enabled .docm; python-pptx presentations, with
    # or without macros; calamine any workbook)
    (b"wordprocessingml.document.main", "docx"),
    (b"presentationml.presentation.main", "pptx"),
    (b"ms-powerpoint.presentation.macroEnabled.main", "pptx"),
    (b"spreadsheetml.sheet.main", "xlsx"),
    (b"spreadsheetml.template.main", "xlsx"),
    (b"ms-excel.sheet.macroEnabled.main", "xlsx"),
]
_ODF = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/epub+zip": "epub",
    b"application/vnd.oasis.opendocument.spreadsheet": "an OpenDocument spreadsheet (.ods)",
    b"application/vnd.oasis.opendocument.presentation": "an OpenDocument presentation (.odp)",
}
_OLE_STREAMS = [
    ("EncryptedPackage", None),
    ("WordDocument", "an old Word document (.doc)"),
    ("Workbook", "an old Excel workbook (.xls)"),
    ("Book", "an old Excel workbook (.xls)"),
    ("PowerPoint Document", "an old PowerPoint presentation (.ppt)"),
]


def size_text(n: int) -> str:
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def open_zip(name: str, data: bytes, what: str | None) -> zipfile.ZipFile:
    """The archive, once its directory passed the guard; `what` names the format the
    file claims to be (None when its name claims no ZIP-based format)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        as_what = f", as {what} is" if what else ""
        raise UnreadableDocument(
            f"{name} is damaged or truncated: it is not a complete ZIP archive{as_what}.",
            hint="Download or export it again and re-upload.",
        ) from exc
    if len(members) > MAX_MEMBERS:
        raise UnreadableDocument(
            f"{name} holds {len(members):,} files inside; Parley opens archives of at most "
            f"{MAX_MEMBERS:,}, so it was not read."
        )
    if any(m.flag_bits & 0x1 for m in members):
        raise EncryptedDocument(
            f"{name} is protected by a password (its ZIP entries are encrypted).",
            hint="Save it again without a password and upload that.",
        )
    expanded = sum(m.file_size for m in members)
    if expanded > MAX_EXPANDED:
        packed = max(1, len(data))
        if expanded / packed > BOMB_RATIO:
            raise UnreadableDocument(
                f"{name} looks like a zip bomb: its {size_text(packed)} would unpack to "
                f"{size_text(expanded)}, so it was not opened.",
                hint=f"Parley unpacks at most {size_text(MAX_EXPANDED)} per file.",
            )
        raise UnreadableDocument(
            f"{name} is too large once unpacked ({size_text(expanded)}); Parley unpacks at "
            f"most {size_text(MAX_EXPANDED)} per file.",
            hint="Split it into smaller files.",
        )
    return archive


def read_member(archive: zipfile.ZipFile, member: str, limit: int = MAX_EXPANDED) -> bytes:
    """An entry's bytes, never more than `limit` nor its declared size, inflated a chunk
    at a time (KeyError when it is missing; zipfile.BadZipFile when its CRC fails)."""
    parts: list[bytes] = []
    size = 0
    with archive.open(member) as stream:
        while size < limit:
            chunk = stream.read(min(_CHUNK, limit - size))
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    return b"".join(parts)


def sniff_zip(name: str, data: bytes, claimed: str | None) -> tuple[str | None, str]:
    """(kind, description) of a ZIP: kind is None for a ZIP Parley does not read.
    `claimed` is what its name says it is ("a Word document"), for the message about
    a damaged one."""
    archive = open_zip(name, data, claimed)
    names = set(archive.namelist())
    if "mimetype" in names:
        mimetype = read_member(archive, "mimetype", 200).strip()
        found = _ODF.get(mimetype)
        if found in ("odt", "epub"):
            return found, ""
        if found:
            return None, found
        if mimetype.startswith(b"application/vnd.oasis.opendocument"):
            return None, "an OpenDocument file of another kind"
    if "[Content_Types].xml" in names:
        types = read_member(archive, "[Content_Types].xml", _SMALL_PART)
        for marker, kind in _OOXML:
            if marker in types:
                return kind, ""
        return None, "an Office file of a kind Parley does not read"
    if "META-INF/container.xml" in names:
        return "epub", ""
    return None, "a ZIP archive of other files"


def refuse_ole(name: str, data: bytes) -> None:
    """Always raises: an OLE compound file is a password-protected Office file or an old
    binary Office format."""
    for stream, what in _OLE_STREAMS:
        if stream.encode("utf-16-le") in data:
            if what is None:
                raise EncryptedDocument(
                    f"{name} is protected by a password.",
                    hint="Open it in Office, remove the password (File › Info › Protect), "
                    "save, and upload it again.",
                )
            raise UnreadableDocument(
                f"{name} is {what}, a format Parley does not read.",
                hint="Save it in the current format (File › Save As: .docx, .xlsx or .pptx).",
            )
    raise UnreadableDocument(f"{name} is an old Microsoft Office file Parley does not read.")


def stored_copy(
    archive: zipfile.ZipFile,
    skip: tuple[str, ...] = (),
    inspect: Callable[[str, bytes], None] | None = None,
) -> bytes:
    """The archive re-packed with every entry inflated here (within the guard's limits,
    `zipfile` enforcing each declared size and CRC) and stored uncompressed, for readers
    that would inflate a lying entry without a limit. Entries under `skip` are left out;
    `inspect(name, data)` sees each entry kept, and may raise to refuse the file."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as copy:
        for member in archive.infolist():
            if member.is_dir() or member.filename.startswith(skip):
                continue
            data = read_member(archive, member.filename)
            if inspect is not None:
                inspect(member.filename, data)
            copy.writestr(member.filename, data)
    return out.getvalue()
