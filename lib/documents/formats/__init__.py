"""Readers for the formats beyond PDF and plain text, one module per family.

- `kinds`: which suffixes are whose, and what a file really is (its content decides, as
  for PDFs: a ".docx" that is a PDF is read as a PDF, one that is an Excel workbook as a
  workbook, with a note).
- `archive`: the ZIP guard every ZIP-based format passes first (zip bombs, encrypted
  entries, damaged archives), the sniffing of what a ZIP holds, and Office files that are
  password-protected (an encrypted DOCX/XLSX/PPTX is an OLE file, not a ZIP).
- `sections`: paragraphs and headings → one `Page` per section, labelled "§ Heading";
  table rows → lines that carry their headers.
- `office` (DOCX, PPTX), `sheets` (XLSX, CSV), `web` (HTML), `ebook` (EPUB),
  `opendoc` (ODT).

Every reader returns `Page(number=None, label=<locator>, text)`: the label ("slide 3",
"Sheet1 rows 2–41", "§ Installation") is what a citation names, and `number` stays None
so nothing tries to render the page as a PDF page. Nothing a document names is fetched
(images, links, stylesheets, external relationships): the readers only parse bytes.

This package imports `lib.documents.extract` (for `Page` and `Opened`), so extract
imports the readers lazily, when such a file arrives; that also keeps python-docx,
python-pptx, calamine and lxml out of the app's start-up.
"""
