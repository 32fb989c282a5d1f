"""Documents for the document tests: the real R manuals (Debian's r-doc-pdf) and small
PDFs generated here for the edge cases (encrypted, image-only, corrupt, truncated...).
"""

from __future__ import annotations

import functools
import io
from pathlib import Path

import pypdf

MANUALS = Path("/usr/share/R/doc/manual")
R_INTRO = MANUALS / "R-intro.pdf"
R_EXTS = MANUALS / "R-exts.pdf"


@functools.cache
def manual(name: str = "R-intro.pdf") -> bytes:
    path = MANUALS / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install Debian's r-doc-pdf (make test does).")
    return path.read_bytes()


def pdf_of_pages(pages: list[int], source: str = "R-intro.pdf") -> bytes:
    """A new PDF made of the given 1-based pages of an R manual."""
    reader = pypdf.PdfReader(io.BytesIO(manual(source)))
    writer = pypdf.PdfWriter()
    for number in pages:
        writer.add_page(reader.pages[number - 1])
    return _write(writer)


def encrypted_pdf(user_password: str) -> bytes:
    """One text page, encrypted (AES-128 needs no extra package; RC4 is pypdf's default)."""
    reader = pypdf.PdfReader(io.BytesIO(pdf_of_pages([14])))
    writer = pypdf.PdfWriter(clone_from=reader)
    writer.encrypt(user_password=user_password, owner_password="owner-secret")
    return _write(writer)


def image_only_pdf(pages: int = 2) -> bytes:
    """A 'scan': pages that are only pictures, with no text layer."""
    from PIL import Image, ImageDraw

    images = []
    for i in range(pages):
        img = Image.new("RGB", (200, 260), "white")
        ImageDraw.Draw(img).text((20, 20), f"scanned page {i + 1}", fill="black")
        images.append(img)
    out = io.BytesIO()
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:])
    return out.getvalue()


def blank_pdf(pages: int = 3) -> bytes:
    """Pages with nothing on them (no text layer and nothing drawn)."""
    writer = pypdf.PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(612, 792)
    return _write(writer)


def mixed_pdf() -> bytes:
    """Text page, picture page, text page: page 2 has no text."""
    writer = pypdf.PdfWriter()
    text = pypdf.PdfReader(io.BytesIO(pdf_of_pages([14, 17])))
    picture = pypdf.PdfReader(io.BytesIO(image_only_pdf(1)))
    writer.add_page(text.pages[0])
    writer.add_page(picture.pages[0])
    writer.add_page(text.pages[1])
    return _write(writer)


def corrupt_pdf() -> bytes:
    return b"%PDF-1.7\n" + bytes(range(256)) * 40


def truncated_pdf() -> bytes:
    data = manual()
    return data[: len(data) // 3]


def junk_prefixed_pdf() -> bytes:
    """A PDF behind 2 KB of junk: PDFium refuses it, pypdf reads it."""
    return b"Content-Type: application/pdf\r\n" + b"x" * 2000 + pdf_of_pages([14])


def png_bytes() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG")
    return out.getvalue()


def _write(writer: pypdf.PdfWriter) -> bytes:
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
