"""Big text files: megabytes per second through extraction and chunking, 1 to 50 MB.

The text is the R manuals' own (Debian's r-doc-pdf: R-exts, R-intro, R-data, R-admin,
R-lang, read with pypdfium2), repeated to each size and uploaded as a UTF-8 .txt file.
Each size goes through what `Ingestor` does before embedding: `open_document` (content
sniffing, decoding), `split_pages` and the page's token count. The old pipeline
(langchain's `RecursiveCharacterTextSplitter` counting with tiktoken, each chunk found
with `str.find` and its lines counted from the start of the text) runs beside it on the
small sizes only: it took 422 s for 48 MB.

    .venv/bin/python bench/chunking.py [--sizes 1,2,5,10,20,50] [--old-up-to 2]

Targets: at least 2 MB/s at every size on 2 cores, and linear: seconds per MB at the
largest size within 1.5x of that at 1 MB.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from langchain_text_splitters import RecursiveCharacterTextSplitter  # noqa: E402

from lib.documents import chunking  # noqa: E402
from lib.documents.extract import open_document  # noqa: E402

MANUALS = Path("/usr/share/R/doc/manual")
SOURCES = ["R-exts.pdf", "R-intro.pdf", "R-data.pdf", "R-admin.pdf", "R-lang.pdf"]
TARGET_MB_S = 2.0
TARGET_LINEARITY = 1.5
MB = 1_000_000


def manual_text() -> str:
    texts = []
    for name in SOURCES:
        opened = open_document(name, (MANUALS / name).read_bytes())
        texts += [p.text for p in opened.pages()]
        opened.close()
    return "\n\n".join(texts)


def sized(text: str, size: int) -> bytes:
    data = (text * (size // len(text) + 1)).encode("utf-8")[:size]
    return data.decode("utf-8", errors="ignore").encode("utf-8")


def parley(name: str, data: bytes) -> int:
    opened = open_document(name, data)
    pages = list(opened.pages())
    chunks = chunking.split_pages(p for p in pages if p.has_text)
    sum(chunking.count_tokens(p.text) for p in pages)
    return len(chunks)


def old_pipeline(name: str, data: bytes) -> int:
    """What chunking did before: the splitter, then find and lines counted from 0."""
    opened = open_document(name, data)
    split = RecursiveCharacterTextSplitter(
        chunk_size=chunking.CHUNK_TOKENS,
        chunk_overlap=chunking.CHUNK_OVERLAP,
        length_function=chunking.count_tokens,
        separators=[*chunking.SEPARATORS, ""],
        keep_separator="end",
    )
    count = 0
    for page in opened.pages():
        cursor = 0
        for piece in split.split_text(page.text):
            start = page.text.find(piece, cursor)
            cursor = start + 1
            page.text.count("\n", 0, start)
            chunking.count_tokens(piece)
            count += 1
        chunking.count_tokens(page.text)
    return count


def timed(fn, name: str, data: bytes) -> tuple[float, int]:  # noqa: ANN001
    started = time.perf_counter()
    chunks = fn(name, data)
    return time.perf_counter() - started, chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,2,5,10,20,50", help="MB, comma-separated")
    parser.add_argument("--old-up-to", type=float, default=2, help="MB: old pipeline sizes")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    text = manual_text()
    parley("warm-up.txt", sized(text, MB // 4))  # threads started, regexes compiled
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; text of the R manuals")
    print(f"{'size':>7} {'chunks':>8} {'Parley s':>9} {'MB/s':>6} {'s per MB':>9}  old s   ratio")
    per_mb = {}
    for size in sizes:
        data = sized(text, int(size * MB))
        runs = [timed(parley, "big.txt", data) for _ in range(args.runs)]
        seconds, chunks = statistics.median(r[0] for r in runs), runs[0][1]
        per_mb[size] = seconds / size
        line = (
            f"{size:>5g} MB {chunks:>8,} {seconds:>9.2f} {size / seconds:>6.2f}"
            f" {seconds / size:>9.3f}"
        )
        if size <= args.old_up_to:
            old, _ = timed(old_pipeline, "big.txt", data)
            line += f"  {old:>5.1f}  {old / seconds:>5.1f}x"
        print(line, flush=True)
    slowest = min(size / (per_mb[size] * size) for size in sizes)
    linearity = per_mb[max(sizes)] / per_mb[min(sizes)]
    print(
        f"slowest {slowest:.2f} MB/s (target >= {TARGET_MB_S}): "
        f"{'met' if slowest >= TARGET_MB_S else 'NOT met'}; "
        f"s per MB at {max(sizes):g} MB / at {min(sizes):g} MB = {linearity:.2f} "
        f"(target <= {TARGET_LINEARITY}): {'met' if linearity <= TARGET_LINEARITY else 'NOT met'}"
    )
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
