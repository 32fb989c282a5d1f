"""OCR for pages that are pictures: scanned PDF pages and image uploads (PNG, JPEG, TIFF).

The engine is Debian's `tesseract-ocr` (5.3, Apache-2.0), run as its binary: each page
goes in as a PNG on stdin and comes back as text on stdout. Why the binary rather than a
binding: pytesseract is itself a wrapper around this binary that adds temporary files
and a dependency; tesserocr links libtesseract, needs a compiler and headers at install
time and holds the GIL-free engine in-process, where a crash or a runaway page takes the
app down with it. A subprocess can be killed at once on Cancel or a timeout, and costs
about 20 ms to start against 1.6 s of recognition.

Measured here (2 cores): a page of R-intro rendered at 2x (1224x1584 grey) takes 1.6 s
with `OMP_THREAD_LIMIT=1` and 10.8 s with tesseract's default OpenMP threads, which
fight each other. So each process runs single-threaded and `workers` of them (one per
core) run side by side: `bench/ocr.py` prints the pages per second.

Blank pages are told apart before any OCR: a page with no objects at all, or one whose
rendering has almost no dark pixels, is blank (a 3,000-page blank PDF is "blank", not
"a scan"), and costs no tesseract run.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import shutil
import subprocess
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from lib.errors import DocumentError, NoTextFound, UnreadableDocument

if TYPE_CHECKING:
    from lib.documents.extract import Page

log = logging.getLogger(__name__)

LANGUAGE = "eng"
SCALE = 2.0  # PDF points to pixels: 144 dpi, tesseract's accuracy on 9-10 pt text holds
PAGE_TIMEOUT = 120.0  # seconds for one page; a normal page takes 1-4 s
# Dark pixels (under half grey) below which a rendered page counts as blank: a full stop
# at 144 dpi is about 30, a short word about 300.
BLANK_DARK_PIXELS = 40
# Images bigger than this are refused before decoding (a 600 dpi Letter scan is 34 MP);
# decoded as grey they take a byte a pixel.
MAX_IMAGE_PIXELS = 80_000_000
# Longer sides are scaled down to this for OCR: 300 dpi on A4 is 3,508 px, and
# tesseract's time grows with the pixels, not the text.
MAX_OCR_SIDE = 3600
MAX_FRAMES = 2000  # pages of a multi-page TIFF
IMAGE_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "TIFF": "TIFF"}


@functools.cache
def installed() -> bool:
    """Whether the tesseract binary and its English data are here."""
    binary = shutil.which("tesseract")
    if binary is None:
        return False
    try:
        langs = subprocess.run(
            [binary, "--list-langs"], capture_output=True, timeout=30, check=False
        ).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("tesseract is installed but does not run: %s", exc)
        return False
    return LANGUAGE in langs.split()


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@dataclass(frozen=True)
class Ocr:
    """Whether this server OCRs pages that have no text, and with how many processes."""

    on: bool
    why_off: str = ""  # for the message when a scan cannot be read
    workers: int = field(default_factory=default_workers)


def configured(enabled: bool, workers: int | None = None) -> Ocr:
    """The OCR an ingest uses: `enabled` is the operator's PARLEY_OCR (on by default)."""
    if not enabled:
        return Ocr(False, "OCR is turned off on this server (PARLEY_OCR)")
    if not installed():
        return Ocr(False, "this server has no OCR engine (install Debian's tesseract-ocr)")
    return Ocr(True, workers=workers or default_workers())


class OcrFailed(Exception):
    """Tesseract failed on one page; the message says how."""


class Pool:
    """Up to `workers` single-threaded tesseract processes at once.

    `close` kills those still running (Cancel, or the reader going away) and waits for
    their threads, so no process outlives the ingest."""

    def __init__(self, workers: int, timeout: float = PAGE_TIMEOUT) -> None:
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="parley-ocr")
        self._timeout = timeout
        self._running: set[subprocess.Popen] = set()
        self._lock = threading.Lock()
        self._closed = False
        self.workers = workers

    def submit(self, png: bytes) -> Future[str]:
        return self._executor.submit(self._recognise, png)

    def _recognise(self, png: bytes) -> str:
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        command = ["tesseract", "stdin", "stdout", "-l", LANGUAGE, "--dpi", str(int(72 * SCALE))]
        with self._lock:
            if self._closed:
                raise OcrFailed("cancelled")
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
            )
            self._running.add(proc)
        try:
            out, err = proc.communicate(png, timeout=self._timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.communicate()
            raise OcrFailed(f"OCR took over {self._timeout:.0f} s") from exc
        finally:
            with self._lock:
                self._running.discard(proc)
        if proc.returncode != 0:
            detail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
            raise OcrFailed(f"tesseract failed ({detail[0][:200]})")
        return out.decode("utf-8", errors="replace")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for proc in self._running:
                proc.kill()
        self._executor.shutdown(wait=True, cancel_futures=True)


# Pictures of pages


def png(image: Image.Image) -> bytes:
    """Grey PNG bytes for tesseract, scaled down when huge."""
    if image.mode != "L":
        image = image.convert("L")
    if max(image.size) > MAX_OCR_SIDE:
        image = image.copy()
        image.thumbnail((MAX_OCR_SIDE, MAX_OCR_SIDE))
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)  # tesseract reads it at once
    return out.getvalue()


def looks_blank(image: Image.Image) -> bool:
    """Almost no dark pixels: white paper, or a scanner's faint speckle."""
    grey = np.asarray(image if image.mode == "L" else image.convert("L"))
    return int(np.count_nonzero(grey < 128)) < BLANK_DARK_PIXELS * max(
        1.0, grey.size / (1224 * 1584)
    )


def image_frames(name: str, data: bytes) -> tuple[str, int, Iterator[Image.Image]]:
    """(kind, frames, the frames one at a time) of a PNG, JPEG or TIFF (TIFFs have pages);
    the kind ("png", "jpeg", "tiff") is what the library stores it as.

    Raises ValueError with a message for the user when the image is refused."""
    too_many = f"more than the {MAX_IMAGE_PIXELS // 1_000_000} million pixels Parley reads"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        fmt = image.format or ""
        width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"{name} has {too_many}.") from exc
    except (OSError, ValueError) as exc:
        raise ValueError(f"{name} is a damaged or unsupported image ({exc}).") from exc
    if fmt not in IMAGE_FORMATS:
        raise ValueError(f"{name} is a {fmt or 'unknown'} image; Parley reads PNG, JPEG and TIFF.")
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{name} is {width:,} x {height:,} pixels, {too_many}.")
    frames = min(getattr(image, "n_frames", 1), MAX_FRAMES)

    def each() -> Iterator[Image.Image]:
        for index in range(frames):
            try:
                image.seek(index)
                if image.size[0] * image.size[1] > MAX_IMAGE_PIXELS:
                    raise ValueError(f"page {index + 1} of {name} is too large to read.")
                yield image.convert("L")
            except (OSError, EOFError) as exc:
                raise ValueError(f"page {index + 1} of {name} is damaged ({exc}).") from exc

    return IMAGE_FORMATS[fmt].lower(), frames, each()


# What happened to the pages without text, for the report


def page_notes(pages: list[Page]) -> list[str]:
    """Report lines naming the pages OCR'd, blank, left unread as scans, or failed."""
    notes = []
    read = _numbers(pages, "ocr")
    if read:
        notes.append(f"Read by OCR: {_pages(read)}.")
    blank = _numbers(pages, "blank")
    if blank:
        notes.append(f"Blank: {_pages(blank)}.")
    for problem, numbers in _problems(pages, "scan").items():
        notes.append(f"Scanned, not read ({problem}): {_pages(numbers)}.")
    for problem, numbers in _problems(pages, "error").items():
        notes.append(f"Could not be read: {_pages(numbers)}: {problem}.")
    return notes


def no_text(name: str, pages: list[Page]) -> DocumentError:
    """Why a document with no text at all was not indexed: blank, scanned, or broken."""
    count = f"{len(pages):,} page{'s' * (len(pages) != 1)}"
    errors, scans = _problems(pages, "error"), _problems(pages, "scan")
    if errors:
        problem, numbers = max(errors.items(), key=lambda item: len(item[1]))
        return UnreadableDocument(
            f"{name} has {count}, and {_pages(numbers)} could not be read: {problem}. "
            "Nothing was indexed.",
            hint="Download or export it again and re-upload.",
        )
    if scans:
        problem, numbers = next(iter(scans.items()))
        return NoTextFound(
            f"{name} has {count} but no text that can be extracted: {_pages(numbers)} "
            f"{'is a scan' if len(numbers) == 1 else 'are scans'} (pictures of text), and "
            f"{problem}, so it was not indexed.",
            hint="Run OCR on it (for example with ocrmypdf) and upload the result.",
        )
    if all(p.source == "blank" for p in pages):
        return NoTextFound(
            f"{name} has {count}, all blank, so it was not indexed.", hint="Check the file."
        )
    return NoTextFound(
        f"{name} has {count} but no text that can be extracted, so it was not indexed.",
        hint="Check the file.",
    )


def _numbers(pages: list[Page], source: str) -> list[int]:
    return [p.number or i for i, p in enumerate(pages, 1) if p.source == source]


def _problems(pages: list[Page], source: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i, page in enumerate(pages, 1):
        if page.source == source:
            found.setdefault(page.problem or "no reason given", []).append(page.number or i)
    return found


def _pages(numbers: list[int], shown: int = 12) -> str:
    """ "page 4", "pages 2–5, 9": runs joined, at most `shown` of them, then how many more."""
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    items = [str(a) if a == b else f"{a}–{b}" for a, b in runs]
    more = f" and {len(items) - shown:,} more" if len(items) > shown else ""
    return f"page{'s' * (len(numbers) > 1)} {', '.join(items[:shown])}{more}"
