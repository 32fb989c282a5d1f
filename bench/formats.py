"""The format readers (lib/documents/formats/): seconds, MB of text a second and peak RSS
growth for a file of each format holding the same text, and for hostile ones (a zip bomb,
an entry lying about its size, a sheet whose stray cell would make calamine allocate
gigabytes), each read in a fresh process.

The text is the R manuals' (Debian's r-doc-pdf, read with pypdfium2), cut into
paragraphs with a heading every 20 (a slide every 10, a sheet row each), repeated to the
size asked for. Each file goes through `open_document` and every page is read, as an
upload is before chunking.

    .venv/bin/python bench/formats.py [--mb 2]     # ~1 minute on a quiet machine

Beside each, the library alone in a fresh process (python-docx's paragraphs, calamine's
rows, lxml's text_content...: no guard, no sections, no row headers) as the baseline:
the time ratio is what Parley's reading costs on top, and on the hostile files the
baseline shows what the guard saves. Targets (issue 13): peak RSS growth under 500 MB
for any single file, and hostile files refused in well under a second with next to no
memory.
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


def plain(path: Path, data: bytes) -> str:
    """The library alone, as a reader with no guard, sections or row headers would use it
    (the baseline): its text, all of it at once."""
    import python_calamine
    from lxml import etree
    from lxml import html as lxml_html

    kind = path.suffix[1:]
    if kind == "docx":
        import docx

        return "\n".join(p.text for p in docx.Document(io.BytesIO(data)).paragraphs)
    if kind == "pptx":
        import pptx

        deck = pptx.Presentation(io.BytesIO(data))
        return "\n".join(s.text_frame.text for d in deck.slides for s in d.shapes
                         if s.has_text_frame)  # fmt: skip
    if kind == "xlsx":
        book = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
        rows = (r for n in book.sheet_names for r in book.get_sheet_by_name(n).iter_rows())
        return "\n".join(" ".join(map(str, r)) for r in rows)
    if kind == "csv":
        return "\n".join(" ".join(r) for r in csv.reader(io.StringIO(data.decode())))
    if kind == "html":
        return lxml_html.document_fromstring(data.decode()).text_content()
    archive = zipfile.ZipFile(io.BytesIO(data))
    if kind == "epub":
        parts = [n for n in archive.namelist() if n.endswith(".xhtml")]
        return "\n".join(lxml_html.fromstring(archive.read(n)).text_content() for n in parts)
    return "".join(etree.fromstring(archive.read("content.xml")).itertext())  # odt


def child(path: Path, baseline: bool) -> None:
    from lib.documents.extract import open_document
    from lib.errors import ParleyError

    data = path.read_bytes()
    before = peak_rss_mb()
    start = time.perf_counter()
    try:
        if baseline:
            outcome = f"{len(plain(path, data)) / MB:.1f} MB of text"
        else:
            opened = open_document(path.name, data)
            pages = list(opened.pages())
            text = sum(len(p.text) for p in pages) / MB
            outcome = f"{len(pages)} pages, {text:.1f} MB of text"
    except ParleyError as exc:
        outcome = "refused: " + str(exc).split(":")[0][:40]
    except Exception as exc:  # the baseline on a hostile file
        outcome = f"failed: {type(exc).__name__}"
    seconds = time.perf_counter() - start
    print(f"{peak_rss_mb() - before:.0f}\t{seconds:.2f}\t{outcome}")


def measure(path: Path, baseline: bool) -> tuple[float, float, str]:
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(path)] + ["--baseline"] * baseline,
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:  # calamine aborts the process when an allocation fails
        return float("nan"), float("nan"), f"process died ({done.returncode})"
    growth, seconds, outcome = done.stdout.strip().splitlines()[-1].split("\t")
    return float(growth), float(seconds), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=2.0, help="MB of text in each document")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.baseline)
        return
    paras = paragraphs(int(args.mb * MB))
    text_mb = sum(len(p) + 1 for p in paras) / MB
    print(f"{len(paras):,} paragraphs, {text_mb:.1f} MB of text in each document")
    print("Parley: open_document and every page; library alone: its text in one go\n")
    print(f"{'':<15}{'Parley':^28}{'library alone':^22}")
    print(f"{'file':<15}{'s':>6}{'MB/s':>6}{'RSS+MB':>8}  {'outcome':<8}"
          f"{'s':>6}{'RSS+MB':>8}  {'time ratio':>10}")  # fmt: skip
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        files = {f"manuals.{kind}": build(paras) for kind, build in BUILDERS.items()}
        files |= hostile()
        for name, data in files.items():
            path = Path(tmp) / name
            path.write_bytes(data)
            growth, seconds, outcome = measure(path, baseline=False)
            base_growth, base_seconds, base_outcome = measure(path, baseline=True)
            worst = max(worst, growth)
            document = name.startswith("manuals")
            rate = f"{text_mb / seconds:6.2f}" if document else " " * 6
            short = "read" if outcome[0].isdigit() else "refused"
            ratio = f"{seconds / base_seconds:10.2f}" if document else ""
            print(f"{name:<15}{seconds:6.2f}{rate}{growth:8.0f}  {short:<8}"
                  f"{base_seconds:6.2f}{base_growth:8.0f}  {ratio:>10}"
                  + ("" if document else f"  library alone: {base_outcome}"))  # fmt: skip
    verdict = "within" if worst < RSS_BUDGET_MB else "OVER"
    print(f"\nlargest peak RSS growth {worst:.0f} MB: {verdict} the {RSS_BUDGET_MB} MB budget")


if __name__ == "__main__":
    main()
