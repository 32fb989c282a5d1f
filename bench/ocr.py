"""OCR pages per second on this machine's cores, as a scanned upload is read.

Real pages of the R manuals (Debian's r-doc-pdf) are rendered to pictures at 144 dpi and
put into an image-only PDF, as a scanner makes one (no text layer). That PDF goes
through `open_document` exactly as an upload does (PDFium renders each page, tesseract
reads it), with one worker and then with one per core (2 here), each single-threaded
(OMP_THREAD_LIMIT=1). Printed: pages per second for each, the speed-up, and how many of
each page's words (4+ letters) OCR found against the manual's own text layer.

    .venv/bin/python bench/ocr.py [--pages 16] [--workers 2]

Target: at least 1 page a second with 2 workers on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pypdfium2 as pdfium  # noqa: E402

from lib.documents import ocr  # noqa: E402
from lib.documents.extract import open_document  # noqa: E402

MANUALS = Path("/usr/share/R/doc/manual")
SOURCES = ["R-intro.pdf", "R-data.pdf", "R-admin.pdf", "R-exts.pdf"]
TARGET = 1.0


def real_pages(count: int) -> tuple[bytes, list[str]]:
    """An image-only PDF of `count` text pages of the manuals, and their text layers."""
    images, texts = [], []
    per_manual = -(-count // len(SOURCES))
    for source in SOURCES:
        doc = pdfium.PdfDocument(MANUALS / source)
        try:
            for index in range(10, min(len(doc), 10 + 3 * per_manual), 3):
                if len(images) >= count:
                    break
                page = doc[index]
                text = page.get_textpage().get_text_range()
                if len(text) < 500:  # a chapter title page: not a typical page
                    continue
                images.append(page.render(scale=ocr.SCALE).to_pil().convert("RGB"))
                texts.append(text)
        finally:
            doc.close()
        if len(images) >= count:
            break
    out = io.BytesIO()
    images[0].save(out, "PDF", resolution=72 * ocr.SCALE, save_all=True, append_images=images[1:])
    return out.getvalue(), texts


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]{4,}", text.lower()))


def run(data: bytes, workers: int) -> tuple[float, list[str]]:
    started = time.perf_counter()
    opened = open_document("scan.pdf", data, ocr.Ocr(True, workers=workers))
    try:
        pages = list(opened.pages())
    finally:
        opened.close()
    assert all(p.source == "ocr" for p in pages), {p.source for p in pages}
    return time.perf_counter() - started, [p.text for p in pages]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--workers", type=int, default=ocr.default_workers())
    args = parser.parse_args()
    if not ocr.installed():
        sys.exit("tesseract is not installed: apt-get install tesseract-ocr")
    data, layers = real_pages(args.pages)
    print(f"{len(layers)} pages of {', '.join(SOURCES)} rendered at {72 * ocr.SCALE:.0f} dpi "
          f"into a {len(data) / 1e6:.1f} MB image-only PDF; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")  # fmt: skip
    results = {}
    for workers in sorted({1, args.workers}):
        seconds, texts = run(data, workers)
        found = [len(words(t) & words(ref)) / max(len(words(ref)), 1)
                 for t, ref in zip(texts, layers, strict=True)]  # fmt: skip
        results[workers] = len(texts) / seconds
        print(f"  {workers} worker{'s' * (workers > 1)}: {seconds:6.1f} s, "
              f"{results[workers]:.2f} pages/s, {seconds / len(texts):.2f} s a page; "
              f"words found {min(found):.0%} (worst page) to {max(found):.0%}, "
              f"mean {sum(found) / len(found):.1%}")  # fmt: skip
    best = results[args.workers]
    if args.workers != 1:
        print(f"speed-up with {args.workers} workers: {best / results[1]:.2f}x")
    verdict = "meets" if best >= TARGET else "MISSES"
    print(f"OCR: {best:.2f} pages/s with {args.workers} workers: {verdict} the target of "
          f"{TARGET:.0f} page/s")  # fmt: skip


if __name__ == "__main__":
    main()
