"""Exporting a whole workspace (lib/history/workspace_export.py), on both backends: one zip
with every conversation as JSON (its tree) and Markdown (its path), the documents as
uploaded and the images; written whole or not at all; and read back by Parley's own
importer into another workspace without losing a message or a branch."""

from __future__ import annotations

import json
import zipfile

import pytest

from lib.conversations import ConversationStore
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.gallery import ImageStore
from lib.history.importer import Importer
from lib.history.workspace_export import export_workspace
from lib.store.backend import Backend
from tests import history_samples as samples
from tests.test_gallery import png, result


def fill(backend: Backend, tmp_path) -> ConversationStore:  # noqa: ANN001
    store = ConversationStore(backend, "alice")
    zip_path = tmp_path / "chatgpt.zip"
    zip_path.write_bytes(samples.chatgpt_zip([
        samples.chatgpt_conversation(), samples.simple_chatgpt("s1", "Plain [link](http://x) ../..")
    ]))  # fmt: skip
    Importer(store).run(zip_path)
    library = DocumentLibrary(backend, "alice")
    report = Ingestor(library, None, limit_bytes=1 << 20).ingest(
        "../notes.md", b"# Herons\n\nThe heron nests by the river.\n" * 20
    )
    assert report.status == "indexed", report.message
    ImageStore(backend, "alice").save(result("a heron", png()))
    return store


def test_the_zip_holds_every_conversation_document_and_image(backend, tmp_path) -> None:
    fill(backend, tmp_path)
    ConversationStore(backend, "bob").create(model="gpt-4o", title="Bob's")  # not alice's
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    assert (summary.conversations, summary.documents, summary.images) == (2, 1, 1)
    with zipfile.ZipFile(summary.path) as archive:
        names = archive.namelist()
        assert all(".." not in n and not n.startswith("/") for n in names)
        assert sum(n.startswith("conversations/") for n in names) == 2
        assert sum(n.startswith("markdown/") for n in names) == 2
        assert [n for n in names if n.startswith("documents/")][0].endswith("-notes.md")
        assert sum(n.startswith("images/") for n in names) == 1
        manifest = json.loads(archive.read("manifest.json"))
        markdown = "".join(archive.read(n).decode() for n in names if n.startswith("markdown/"))
    assert manifest["conversations"] == 2 and "Bob's" not in markdown
    assert "Yes, every spring." in markdown
    assert not list(tmp_path.glob(".*partial"))


def test_parleys_importer_reads_it_back_without_loss(backend, tmp_path) -> None:
    alice = fill(backend, tmp_path)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    bob = ConversationStore(backend, "bob")
    report = Importer(bob).run(summary.path)
    assert len(report.imported) == 2 and not report.failed and report.branched == 1

    def shape(store: ConversationStore) -> list:
        out = []
        for conv in sorted(store.list(), key=lambda c: c.title):
            tree = store.all_messages(conv.id)
            index = {m.id: i for i, m in enumerate(tree)}
            out.append((conv.title, conv.model, [
                (m.role, m.content, m.model, index.get(m.parent_id)) for m in tree
            ], [m.content for m in store.path(conv.id)]))  # fmt: skip
        return out

    assert shape(bob) == shape(alice)
    again = Importer(bob).run(summary.path)
    assert (len(again.imported), again.skipped) == (0, 2)


def test_a_failed_export_leaves_no_file(backend, tmp_path, monkeypatch) -> None:
    fill(backend, tmp_path)

    def broken(self, document):  # noqa: ANN001, ANN202
        raise OSError("No space left on device")

    monkeypatch.setattr(DocumentLibrary, "read_file", broken)
    with pytest.raises(OSError):
        export_workspace(backend, "alice", tmp_path / "all.zip")
    assert not (tmp_path / "all.zip").exists() and not list(tmp_path.glob(".*partial"))
