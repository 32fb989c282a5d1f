"""Exporting a whole workspace (lib/history/workspace_export.py), on both backends: one zip
with every conversation as JSON (its tree) and Markdown (its path), the documents as
uploaded and the images; written whole or not at all; and read back by Parley's own
importer into another workspace without losing a message or a branch."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lib.conversation import Message
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


def library_of(backend: Backend, workspace: str) -> list[tuple]:
    library = DocumentLibrary(backend, workspace)
    return sorted((d.name, d.sha256, d.status, library.read_file(d)) for d in library.list())


def gallery_of(backend: Backend, workspace: str) -> list[tuple]:
    gallery = ImageStore(backend, workspace)
    return [(i.prompt, i.revised_prompt, i.model, i.size, round(i.created_at, 3), gallery.read(i))
            for i in gallery.list(limit=100)]  # fmt: skip


def attached(store: ConversationStore) -> list[tuple]:
    """Each attachment of each conversation's messages: (title, message text, name, bytes)."""
    from lib.chat.attachments import AttachmentStore

    files = AttachmentStore(store.backend, store.workspace)
    out = []
    for conv in store.list():
        messages = store.all_messages(conv.id)
        by_id = {m.id: m.content for m in messages}
        for mid, atts in sorted(files.of(messages).items()):
            out += [(conv.title, by_id[mid], a.name, files.read(a)) for a in atts]
    return sorted(out)


def test_a_whole_workspace_comes_back_in_another(backend, tmp_path) -> None:
    alice = fill(backend, tmp_path)
    herons = next(c for c in alice.list() if c.title == "Herons")
    alice.set_folder(herons.id, "Birds <b>")
    alice.set_pinned(herons.id, True)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    bob = ConversationStore(backend, "bob")
    report = Importer(bob).run(summary.path)
    assert len(report.imported) == 2 and not report.failed and report.branched == 1
    files = report.files
    assert files is not None and not files.failed
    assert (len(files.documents), files.keyword_only, files.images) == (1, 1, 1)
    lines = "\n".join(report.lines())
    assert "1 document imported." in lines and "1 image imported." in lines
    assert "re-index them on the Documents page for search by meaning" in lines

    def conversations(store: ConversationStore) -> list:
        out = []
        for conv in store.list():  # in the list's order: pinned first, then by time
            tree = store.all_messages(conv.id)
            index = {m.id: i for i, m in enumerate(tree)}
            out.append((conv.title, conv.model, conv.folder, conv.pinned, [
                (m.role, m.content, m.model, index.get(m.parent_id)) for m in tree
            ], [m.content for m in store.path(conv.id)]))  # fmt: skip
        return out

    assert conversations(bob) == conversations(alice)
    assert conversations(bob)[0][2:4] == ("Birds <b>", True)
    assert attached(bob) == attached(alice) and len(attached(bob)) == 1  # the heron PNG
    assert library_of(backend, "bob") == library_of(backend, "alice")
    assert DocumentLibrary(backend, "bob").list()[0].embedding_model is None  # keyword-only
    assert gallery_of(backend, "bob") == gallery_of(backend, "alice")

    again = Importer(bob).run(summary.path)
    assert (len(again.imported), again.skipped) == (0, 2)
    assert again.files is not None
    assert (again.files.documents, again.files.documents_skipped) == ([], 1)
    assert (again.files.images, again.files.images_skipped) == (0, 1)
    assert "1 skipped: already in the library" in "\n".join(again.lines())
    assert len(DocumentLibrary(backend, "bob").list()) == 1
    assert ImageStore(backend, "bob").count() == 1


def test_a_damaged_image_in_a_workspace_export_is_named_and_the_rest_come_in(
    backend, tmp_path
) -> None:
    fill(backend, tmp_path)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(summary.path) as source, zipfile.ZipFile(broken, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.startswith("images/"):
                data = data[: len(data) // 2]  # a truncated PNG
            target.writestr(info, data)
    report = Importer(ConversationStore(backend, "bob")).run(broken)
    assert len(report.imported) == 2 and report.files is not None
    assert len(report.files.documents) == 1 and report.files.images == 0
    ((name, reason),) = report.files.failed
    assert name.startswith("parley-a-heron-") and "could not be decoded" in reason
    assert ImageStore(backend, "bob").count() == 0


def test_the_terminal_exports_everything_and_imports_it_back(backend, data_dir, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.waits import WAIT

    local = ConversationStore(backend, "local")
    conv = local.create(model="gpt-4o", title="Kept in a folder")
    local.add_message(conv.id, Message("user", "Where do herons nest?"))
    local.set_folder(conv.id, "Work")
    env = {**os.environ, "PARLEY_DATA_DIR": str(data_dir), "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # fmt: skip

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lib.cli", *args],
                              capture_output=True, text=True, env=env, timeout=WAIT)  # fmt: skip

    target = tmp_path / "everything.zip"
    done = cli("export", "--all", "-o", str(target))
    assert done.returncode == 0, done.stderr
    assert "Exported 1 conversation, 0 documents and 0 images to everything.zip" in done.stdout
    with zipfile.ZipFile(target) as archive:
        (member,) = [n for n in archive.namelist() if n.startswith("conversations/")]
        assert json.loads(archive.read(member))["folder"] == "Work"
    back = cli("import", str(target), "--workspace", "shared")
    assert back.returncode == 0, back.stderr
    (copy,) = ConversationStore(backend, "shared").list()
    assert (copy.title, copy.folder) == ("Kept in a folder", "Work")
    assert local.get(conv.id).folder == "Work"
    for args, message in [
        (["export"], "give a conversation's ID, or --all"),
        (["export", conv.id, "--all"], "give a conversation's ID, or --all"),
    ]:
        wrong = cli(*args)
        assert wrong.returncode == 2 and message in wrong.stderr, wrong.stderr


@pytest.mark.parametrize(
    ("limit", "prefix"),
    [
        ("lib.history.workspace_import.DOCUMENT_LIMIT", "documents/"),
        ("lib.images.MAX_IMAGE_BYTES", "images/"),
    ],  # fmt: skip
    ids=["document", "image"],
)
def test_a_file_over_its_limit_in_a_workspace_export_is_too_large_not_missing(
    backend, tmp_path, monkeypatch, limit, prefix
) -> None:
    """The limits are 512 MB and the images' own; lowered here to the bytes of a test file."""
    fill(backend, tmp_path)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    monkeypatch.setattr(limit, 100)
    report = Importer(ConversationStore(backend, "bob")).run(summary.path)
    assert report.files is not None
    ((member, reason),) = report.files.failed
    assert member.startswith(prefix)
    assert reason.startswith("too large to import: ") and reason.endswith(
        ", over the limit of 100 bytes"
    )
    assert "not in the export" not in "\n".join(report.lines())
