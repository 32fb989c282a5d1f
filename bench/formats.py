"""The format readers (lib/documents/formats/): seconds, MB of text a second and peak RSS
growth for a file of each format holding the same text, and for hostile ones (a zip bomb,
an entry lying about its size, a sheet whose stray cell would make calamine allocate
gigabytes), each read in a fresh process.

The text is the R manuals' (Debian's r-doc-pdf, read with pypdfium2), cut into
paragraphs with a heading every 20 (a slide every 10, a sheet row each), repeated to the
size asked for. Each file goes through `open_document` and every page is read, as an
upload is before chunking.

    .venv/bin/python bench/formats.py [--mb 5]

Targets (issue 13): peak RSS growth under 500 MB for any single file, and hostile files
refused in well under a second with next to no memory.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")  # not allowed in XML
MANUALS = Path("/usr/share/R/doc/manual")
SOURCES = ["R-intro.pdf", "R-data.pdf", "R-admin.pdf"]
RSS_BUDGET_MB = 500
MB = 1_000_000


def paragraphs(size: int) -> list[str]:
    from lib.documents.extract import open_document

    found: list[str] = []
    for name in SOURCES:
        opened = open_document(name, (MANUALS / name).read_bytes())
        for page in opened.pages():
            lines = [" ".join(CONTROL.sub(" ", line).split()) for line in page.text.splitlines()]
            found += [" ".join(lines[i : i + 5]) for i in range(0, len(lines), 5)]
        opened.close()
    out, total = [], 0
    while total < size:
        for p in found:
            out.append(p)
            total += len(p) + 1
            if total >= size:
                break
    return out


def heading(i: int) -> str:
    return f"Section {i // 20 + 1}"


def docx_of(paras: list[str]) -> bytes:
    import docx

    document = docx.Document()
    for i, p in enumerate(paras):
        if i % 20 == 0:
            document.add_heading(heading(i), 1)
        document.add_paragraph(p)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def pptx_of(paras: list[str]) -> bytes:
    import pptx

    deck = pptx.Presentation()
    for start in range(0, len(paras), 10):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = heading(start)
        slide.placeholders[1].text = "\n".join(paras[start : start + 10])
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def xlsx_of(paras: list[str]) -> bytes:
    import xlsxwriter

    out = io.BytesIO()
    book = xlsxwriter.Workbook(out, {"in_memory": True, "constant_memory": True})
    sheet = book.add_worksheet("Text")
    sheet.write_row(0, 0, ["Row", "Section", "Paragraph"])
    for i, p in enumerate(paras, start=1):
        sheet.write_row(i, 0, [i, heading(i), p[:32_000]])
    book.close()
    return out.getvalue()


def csv_of(paras: list[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Row", "Section", "Paragraph"])
    writer.writerows([i, heading(i), p] for i, p in enumerate(paras, start=1))
    return out.getvalue().encode()


def html_of(paras: list[str]) -> bytes:
    body = "".join(
        (f"<h2>{heading(i)}</h2>" if i % 20 == 0 else "") + f"<p>{escape(p)}</p>\n"
        for i, p in enumerate(paras)
    )
    page = "<!DOCTYPE html><html><head><meta charset=utf-8><title>R</title></head>"
    return f"{page}<body><nav><a href=/>Home</a></nav><main>{body}</main></body></html>".encode()


def epub_of(paras: list[str]) -> bytes:
    from tests.format_samples import zip_of

    chapters = {}
    for n, start in enumerate(range(0, len(paras), 200), start=1):
        body = html_of(paras[start : start + 200]).decode().split("<body>", 1)[1]
        chapters[f"OEBPS/c{n}.xhtml"] = (
            '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
            f"<head><title>{n}</title></head><body>{body.replace('<meta charset=utf-8>', '')}"
        )
    items = "".join(
        f'<item id="c{n}" href="c{n}.xhtml" media-type="application/xhtml+xml"/>'
        for n in range(1, len(chapters) + 1)
    )
    spine = "".join(f'<itemref idref="c{n}"/>' for n in range(1, len(chapters) + 1))
    return zip_of(
        {
            "mimetype": "application/epub+zip",
            "META-INF/container.xml": '<?xml version="1.0"?><container version="1.0" '
            'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles><rootfile '
            'full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
            "</rootfiles></container>",
            "OEBPS/content.opf": '<?xml version="1.0"?><package '
            'xmlns="http://www.idpf.org/2007/opf" version="3.0"><manifest>'
            f"{items}</manifest><spine>{spine}</spine></package>",
            **chapters,
        },
        first_stored="mimetype",
    )


def odt_of(paras: list[str]) -> bytes:
    from tests.format_samples import odt_file

    body = "".join(
        (f'<text:h text:outline-level="1">{heading(i)}</text:h>' if i % 20 == 0 else "")
        + f"<text:p>{escape(p)}</text:p>"
        for i, p in enumerate(paras)
    )
    return odt_file(body=body)


BUILDERS = {
    "docx": docx_of, "pptx": pptx_of, "xlsx": xlsx_of, "csv": csv_of,
    "html": html_of, "epub": epub_of, "odt": odt_of,
}  # fmt: skip


def hostile() -> dict[str, bytes]:
    from tests import format_samples as samples

    docx = samples.docx_file()
    member = "word/document.xml"
    honest = zipfile.ZipFile(io.BytesIO(docx)).getinfo(member).file_size
    padded = samples.rewritten(docx, member, lambda x: x + b" " * (256 << 20))
    row = "<row>" + '<c t="inlineStr"><is><t>x</t></is></c>' * 3000 + "</row>"
    far = (row + '<row r="1000000"><c><v>1</v></c></row>').encode()
    return {
        "bomb.docx": samples.bombed(docx),
        "bomb.xlsx": samples.bombed(samples.xlsx_file()),
        "lying.docx": samples.lying_about(padded, member, honest),
        "stray.xlsx": samples.xlsx_with_cells(far),
    }


def peak_rss_mb() -> float:
    """VmHWM: ru_maxrss carries over fork and exec, so a child would start at its
    parent's peak."""
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def child(path: Path) -> None:
    from lib.documents.extract import open_document
    from lib.errors import ParleyError

    data = path.read_bytes()
    before = peak_rss_mb()
    start = time.perf_counter()
    try:
        opened = open_document(path.name, data)
        pages = list(opened.pages())
        outcome = f"{len(pages)} pages, {sum(len(p.text) for p in pages) / MB:.1f} MB of text"
    except ParleyError as exc:
        outcome = "refused: " + str(exc).split(":")[0][:40]
    seconds = time.perf_counter() - start
    print(f"{peak_rss_mb() - before:.0f}\t{seconds:.2f}\t{outcome}")


def measure(path: Path) -> tuple[float, float, str]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path)],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout.strip().splitlines()[-1]  # fmt: skip
    growth, seconds, outcome = out.split("\t")
    return float(growth), float(seconds), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=5.0, help="MB of text in each document")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    paras = paragraphs(int(args.mb * MB))
    text_mb = sum(len(p) + 1 for p in paras) / MB
    print(f"{len(paras):,} paragraphs, {text_mb:.1f} MB of text in each document\n")
    print(f"{'file':<14}{'size':>10}{'seconds':>9}{'MB/s':>7}{'RSS +MB':>9}  outcome")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        files = {f"manuals.{kind}": build(paras) for kind, build in BUILDERS.items()}
        files |= hostile()
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            growth, seconds, outcome = measure(path)
            worst = max(worst, growth)
            rate = f"{text_mb / seconds:7.2f}" if name.startswith("manuals") else " " * 7
            size = f"{len(data) / MB:.2f} MB"
            print(f"{name:<14}{size:>10}{seconds:9.2f}{rate}{growth:9.0f}  {outcome}")
    verdict = "within" if worst < RSS_BUDGET_MB else "OVER"
    print(f"\nlargest peak RSS growth {worst:.0f} MB: {verdict} the {RSS_BUDGET_MB} MB budget")


if __name__ == "__main__":
    main()
