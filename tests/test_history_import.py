"""Importing exports into a workspace (lib/history/importer.py), on both backends: every
app's conversations come in with their titles, times, models and branches; a second
import adds nothing; a conversation goes in whole or not at all; the report is honest;
Cancel keeps what was imported whole; nothing already in the workspace is touched by a
bad file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lib.conversations import ConversationStore
from lib.errors import UnreadableExport
from lib.history import importer as importer_module
from lib.history.archive import MAX_FILE_BYTES
from lib.history.importer import Importer
from lib.store.backend import Backend
from tests import history_samples as samples


@pytest.fixture
def store(backend: Backend) -> ConversationStore:
    return ConversationStore(backend, "alice")


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def everything(tmp_path: Path) -> list[Path]:
    return [
        write(tmp_path, "chatgpt.zip", samples.chatgpt_zip(
            [samples.chatgpt_conversation(), samples.simple_chatgpt("s1", "Plain")], split=1)),
        write(tmp_path, "openwebui.json", json.dumps(samples.openwebui_export())),
        write(tmp_path, "librechat.json", json.dumps(samples.librechat_export(tree=True))),
    ]  # fmt: skip


def test_every_app_comes_in_with_titles_times_models_and_branches(store, tmp_path) -> None:
    reports = [Importer(store).run(p) for p in everything(tmp_path)]
    assert [len(r.imported) for r in reports] == [2, 1, 1]
    assert reports[0].apps == {"chatgpt": 2} and reports[0].branched == 1
    titles = {c.title: c for c in store.list()}
    assert set(titles) == {"Herons", "Plain", "Rowing", "River birds"}
    herons = titles["Herons"]
    assert herons.created_at == samples.T0 and herons.updated_at == samples.T0 + 7
    shown = store.path(herons.id)
    assert [(m.role, m.content) for m in shown] == [
        ("user", "Where do grey herons nest? See:"), ("assistant", "In tall trees by rivers."),
        ("user", "And in spring?"), ("assistant", "Yes, every spring."),
    ]  # fmt: skip
    assert shown[-1].model == "gpt-4o-mini" and shown[0].created_at == samples.T0 + 3
    # The edited question's first version is a sibling, one switch away.
    siblings = store.siblings(herons.id, shown)
    assert len(siblings[shown[0].id]) == 2 and siblings[shown[0].id].index == 1
    rowing = titles["Rowing"]
    assert rowing.system_prompt == "Answer briefly." and rowing.model == "llama3"
    assert store.path(rowing.id)[-1].content == "Someone who sculls a boat."
    assert "Files the messages refer to" not in " ".join(reports[0].lines())  # the PNG is there
    from lib.chat.attachments import AttachmentStore

    attached = AttachmentStore(store.backend, store.workspace).of(shown)
    (image,) = attached[shown[0].id]
    assert image.kind == "image" and image.name == "file-Heron1-heron.png"
    assert AttachmentStore(store.backend, store.workspace).read(image) == samples.PNG


def test_importing_the_same_files_again_adds_nothing(store, tmp_path) -> None:
    paths = everything(tmp_path)
    for path in paths:
        Importer(store).run(path)
    before = sorted((c.id, c.title) for c in store.list())
    again = [Importer(store).run(p) for p in paths]
    assert [(len(r.imported), r.skipped) for r in again] == [(0, 2), (0, 1), (0, 1)]
    assert "2 skipped: already imported." in again[0].lines()
    assert sorted((c.id, c.title) for c in store.list()) == before


def test_another_workspace_imports_its_own_copy(backend, tmp_path) -> None:
    path = everything(tmp_path)[1]
    alice, bob = ConversationStore(backend, "alice"), ConversationStore(backend, "bob")
    Importer(alice).run(path)
    assert len(Importer(bob).run(path).imported) == 1
    assert [c.title for c in bob.list()] == ["Rowing"]


def test_a_conversation_goes_in_whole_or_not_at_all(store, tmp_path, monkeypatch) -> None:
    real = ConversationStore.add_tree
    calls = {"n": 0}

    def flaky(self, cid, messages):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:  # the 2nd conversation, after its row and first messages
            real(self, cid, messages[:2])
            raise OSError("disk gone")
        return real(self, cid, messages)

    monkeypatch.setattr(ConversationStore, "add_tree", flaky)
    convs = [samples.simple_chatgpt(f"s{n}", f"Chat {n}") for n in range(3)]
    path = write(tmp_path, "c.json", json.dumps(convs))
    with pytest.raises(OSError):
        Importer(store).run(path)
    assert [c.title for c in store.list()] == ["Chat 0"]  # nothing of Chat 1 is left
    monkeypatch.setattr(ConversationStore, "add_tree", real)
    report = Importer(store).run(path)  # and the rest comes in on the next try
    assert (len(report.imported), report.skipped) == (2, 1)
    assert sorted(c.title for c in store.list()) == ["Chat 0", "Chat 1", "Chat 2"]


def test_cancel_keeps_what_was_imported_whole(store, tmp_path) -> None:
    path = write(
        tmp_path,
        "c.json",
        json.dumps([samples.simple_chatgpt(f"s{n}", f"Chat {n}", words=2000) for n in range(10)]),
    )  # fmt: skip; big enough that reading it takes several of ijson's buffers
    seen: list[float] = []
    report = Importer(
        store, progress=lambda share, text: seen.append(share), cancelled=lambda: len(seen) >= 3
    ).run(path)
    assert report.cancelled and len(report.imported) == 3 and not report.ok
    assert [len(store.path(cid)) for cid in report.imported] == [4, 4, 4]
    assert seen == sorted(seen) and 0 < seen[-1] < 1
    assert "Cancelled" in report.lines()[-1]


def test_failures_are_counted_with_reasons_beside_what_came_in(store, tmp_path) -> None:
    good = samples.simple_chatgpt("ok", "Fine")
    path = write(tmp_path, "c.json", json.dumps([good, {"mapping": {}}, {"x": 1}]))
    report = Importer(store).run(path)
    assert len(report.imported) == 1 and len(report.failed) == 2
    text = "\n".join(report.lines())
    assert "1 conversation imported from c.json (ChatGPT: 1)." in text
    assert "2 could not be imported:" in text and "c.json #2" in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (json.dumps([{"x": 1}, {"mapping": {}}]), "Nothing was imported from bad.json"),
        (samples.zip_bytes({"notes.txt": "hi"}), "holds no conversations"),
        (b"\x00\x01 not json", "not an export"),
    ],
    ids=["nothing importable", "zip of other files", "binary"],
)
def test_a_bad_file_touches_nothing_already_there(store, tmp_path, data, message) -> None:
    mine = store.create(model="gpt-4o", title="Mine")
    path = write(tmp_path, "bad.json", data)
    with pytest.raises(UnreadableExport, match=message):
        Importer(store).run(path)
    assert [(c.id, c.title) for c in store.list()] == [(mine.id, "Mine")]


def test_files_the_export_lacks_are_listed_by_name(store, tmp_path) -> None:
    conv = samples.chatgpt_conversation()
    path = write(tmp_path, "conversations.json", json.dumps([conv]))  # no zip: no files
    report = Importer(store).run(path)
    assert "Files the messages refer to but the export does not hold: file-Heron1." in (
        report.lines()
    )


def test_a_parley_export_round_trips(store, tmp_path) -> None:
    from lib import export

    Importer(store).run(everything(tmp_path)[0])
    herons = next(c for c in store.list() if c.title == "Herons")
    data = export.to_json(herons, store.path(herons.id))
    other = ConversationStore(store.backend, "bob")
    report = Importer(other).run(write(tmp_path, "parley.json", data))
    assert len(report.imported) == 1
    copy = other.list()[0]
    assert [m.content for m in other.path(copy.id)] == [m.content for m in store.path(herons.id)]
    assert copy.title == "Herons" and importer_module.APP_NAMES["parley"] == "Parley"


def test_the_terminal_imports_and_reports(backend, data_dir, tmp_path) -> None:
    import os
    import subprocess
    import sys

    from tests.waits import WAIT

    path = everything(tmp_path)[0]
    env = {**os.environ, "PARLEY_DATA_DIR": str(data_dir), "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # fmt: skip

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lib.cli", "import", str(path)],
            capture_output=True, text=True, env=env, timeout=WAIT,
        )  # fmt: skip

    first, second = run(), run()
    assert first.returncode == 0, first.stderr
    assert "2 conversations imported from chatgpt.zip (ChatGPT: 2)." in first.stdout
    assert "0 conversations imported" in second.stdout and "2 skipped" in second.stdout
    local = ConversationStore(backend, "local")
    assert sorted(c.title for c in local.list()) == ["Herons", "Plain"]
    bad = subprocess.run(
        [sys.executable, "-m", "lib.cli", "import", str(write(tmp_path, "x.json", "{}"))],
        capture_output=True, text=True, env=env, timeout=WAIT,
    )  # fmt: skip
    assert bad.returncode != 0 and "not an export" in (bad.stderr + bad.stdout)
    assert "Traceback" not in bad.stderr


def test_add_tree_links_parents_and_refuses_what_it_cannot_place(store) -> None:
    from lib.conversation import Message
    from lib.errors import NotFoundError

    conv = store.create(model="gpt-4o", title="Tree")
    q, a1, a2 = Message("user", "q"), Message("assistant", "a1"), Message("assistant", "a2")
    store.add_tree(conv.id, [(q, None), (a1, 0), (a2, 0)])
    assert (a1.parent_id, a2.parent_id) == (q.id, q.id)
    store.set_leaf(conv.id, a2.id)
    assert [m.content for m in store.path(conv.id)] == ["q", "a2"]
    with pytest.raises(ValueError, match="before its children"):
        store.add_tree(conv.id, [(Message("assistant", "x"), 1), (Message("user", "y"), None)])
    other = ConversationStore(store.backend, "bob")
    with pytest.raises(NotFoundError):
        other.add_tree(conv.id, [(Message("user", "intruder"), None)])
    assert len(store.all_messages(conv.id)) == 3


LONG = (
    "\n\n".join(
        f"Paragraph {n}: the grey heron waits by the river for fish, and in spring it nests in "
        f"tall trees with {n} others, a heronry loud with young."
        for n in range(400)
    )
    + "\n\nThe kingfisher nests in a burrow in the bank."
)  # about 13,000 tokens


def with_files(cid: str, title: str, *files: tuple[str, str]) -> dict:
    """A ChatGPT conversation whose first question carries these uploads (id, name)."""
    conv = samples.simple_chatgpt(cid, title)
    conv["mapping"]["m0"]["message"]["metadata"]["attachments"] = [
        {"id": fid, "name": name} for fid, name in files
    ]
    return conv


def test_files_the_user_uploaded_come_in_whole_or_are_named(store, tmp_path) -> None:
    conv = with_files("f1", "With files", ("file-Notes1", "notes.txt"),
                      ("file-Big1", "big.txt"), ("file-Gone1", "gone.pdf"))  # fmt: skip
    members = {
        "conversations.json": json.dumps([conv]),
        "file-Notes1-notes.txt": "The heron nests by the river.",
        "file-Big1-big.txt": LONG,
    }
    path = write(tmp_path, "export.zip", samples.zip_bytes(members))
    report = Importer(store).run(path)
    text = "\n".join(report.lines())
    assert "does not hold: file-Gone1." in text and "not imported" not in text
    from lib.chat.attachments import AttachmentStore
    from lib.documents.library import DocumentLibrary

    (imported,) = store.list()
    shown = store.path(imported.id)
    attachments = AttachmentStore(store.backend, store.workspace)
    notes, big = attachments.of(shown)[shown[0].id]
    assert notes.kind == "text" and notes.name == "file-Notes1-notes.txt"
    # The long one: the file kept as the attachment, its text in the library, searched by
    # this conversation's replies (keyword-only: the importer has no embedder).
    assert big.kind == "document" and big.name == "file-Big1-big.txt"
    assert attachments.read(big) == LONG.encode()
    library = DocumentLibrary(store.backend, store.workspace)
    (doc,) = library.list()
    assert doc.id == big.document_id and doc.status == "ready" and doc.embedding_model is None
    assert library.conversation_documents(imported.id) == [doc.id]
    (best, _), *_ = library.search.keywords("kingfisher burrow", [doc.id], 3)
    assert "kingfisher" in library.chunks([best])[best].text
    assert "1 file too long to send whole, kept as attachments and put in the document " in text
    assert (
        "  file-Big1-big.txt (in “With files”, 1" in text
        and "indexed (keyword search only)" in text
    )
    assert "1 of them indexed without vectors (keyword search only): re-index them" in text
    again = Importer(store).run(path)  # the same export: nothing new, in the library neither
    assert (len(again.imported), again.skipped, len(library.list())) == (0, 1, 1)


def test_a_long_file_in_two_conversations_is_indexed_once(store, tmp_path) -> None:
    first = with_files("f1", "First", ("file-Big1", "big.txt"))
    second = with_files("f2", "Second", ("file-Big2", "big copy.txt"))
    members = {"conversations.json": json.dumps([first, second]),
               "file-Big1-big.txt": LONG, "file-Big2-big copy.txt": LONG}  # fmt: skip
    report = Importer(store).run(write(tmp_path, "export.zip", samples.zip_bytes(members)))
    text = "\n".join(report.lines())
    assert "2 files too long to send whole" in text
    assert "file-Big2-big copy.txt (in “Second”" in text
    assert "already in the library, now searched in this conversation too." in text
    assert "1 of them indexed without vectors" in text
    from lib.documents.library import DocumentLibrary

    library = DocumentLibrary(store.backend, store.workspace)
    (doc,) = library.list()
    assert [library.conversation_documents(c.id) for c in store.list()] == [[doc.id], [doc.id]]


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        (b"\x00\x01\x02" * 50, "big.txt ("),
        (b"", "big.txt ("),
    ],
    ids=["binary", "empty"],
)
def test_a_file_that_cannot_be_read_is_named_with_its_reason(store, tmp_path, member, reason):
    conv = with_files("f1", "With files", ("file-Big1", "big.txt"))
    members = {"conversations.json": json.dumps([conv]), "file-Big1-big.txt": member}
    report = Importer(store).run(write(tmp_path, "export.zip", samples.zip_bytes(members)))
    text = "\n".join(report.lines())
    assert "Files the export holds but that were not imported: file-Big1-" in text
    assert reason in text and len(report.imported) == 1


BIG = MAX_FILE_BYTES + 1  # zeros: the zip holds ~50 KB of them


@pytest.mark.parametrize(
    ("size", "missing", "held"),
    [
        (
            BIG,
            "",
            "file-Big1-big.txt (too large to import: 52,428,801 bytes, over the limit "
            "of 52,428,800 bytes)",
        ),
        (
            60 << 20,
            "",
            "file-Big1-big.txt (too large to import: 60.0 MB, over the limit of 50.0 MB)",
        ),  # below 64 MB: zeros past it are a zip bomb
        (None, "Files the messages refer to but the export does not hold: file-Big1.", ""),
    ],
    ids=["a-byte-over", "60-MB", "absent"],
)
def test_a_file_over_the_limit_is_too_large_not_missing(store, tmp_path, size, missing, held):
    conv = with_files("f1", "With a big file", ("file-Big1", "big.txt"))
    members = {"conversations.json": json.dumps([conv])}
    if size is not None:
        members["file-Big1-big.txt"] = b"\0" * size
    report = Importer(store).run(write(tmp_path, "export.zip", samples.zip_bytes(members)))
    text = "\n".join(report.lines())
    assert len(report.imported) == 1
    if held:
        assert report.missing_files == [] and "does not hold" not in text
        assert f"Files the export holds but that were not imported: {held}." in text
    else:
        assert missing in text and report.not_imported == []


def test_a_file_over_the_limit_carried_in_the_json_is_too_large(
    store, tmp_path, monkeypatch
) -> None:
    import base64

    monkeypatch.setattr(importer_module, "MAX_FILE_BYTES", 1024)  # not 50 MB of base64
    carried = {"name": "big.txt", "data_base64": base64.b64encode(b"a" * 2048).decode()}
    conv = {"parley_export": 2, "id": "c1", "title": "Inline", "messages": [
        {"id": 1, "parent_id": None, "role": "user", "content": "See", "attachments": [carried]}
    ]}  # fmt: skip
    report = Importer(store).run(write(tmp_path, "one.json", json.dumps(conv)))
    assert len(report.imported) == 1 and report.missing_files == []
    assert report.not_imported == [
        "big.txt (too large to import: 2.0 KB, over the limit of 1.0 KB)"
    ]


@pytest.mark.parametrize("ocr_on", [False, True], ids=["ocr-off", "ocr-on"])
def test_a_scanned_file_is_ocrd_only_where_the_operator_allows(
    store, tmp_path, recognised, ocr_on
) -> None:
    """PARLEY_OCR (`Settings.ocr`) holds for an import as for the Documents page and the
    chat box: off, a scan the export holds is named with the Documents page's reason and
    tesseract never runs; on, it is read and attached."""
    from tests.test_documents_ocr import scan_pdf

    seen = recognised
    conv = with_files("s1", "With a scan", ("file-Scan1", "scan.pdf"))
    members = {"conversations.json": json.dumps([conv]), "file-Scan1-scan.pdf": scan_pdf(14)}
    report = Importer(store, ocr=ocr_on).run(
        write(tmp_path, "export.zip", samples.zip_bytes(members))
    )
    text = "\n".join(report.lines())
    assert len(report.imported) == 1
    if ocr_on:
        assert seen and "not imported" not in text
    else:
        assert seen == []
        assert "Files the export holds but that were not imported: file-Scan1-" in text
        assert "OCR is turned off on this server (PARLEY_OCR)" in text


def test_ctrl_c_in_the_terminal_cancels_between_conversations(backend, data_dir, tmp_path):
    """The first Ctrl-C stops the import after the conversation it is in; what came in
    stays, each conversation whole, and the report says so."""
    import os
    import signal
    import subprocess
    import sys

    from tests.history_samples import write_big_chatgpt
    from tests.waits import WAIT

    total = 3_000
    path = write_big_chatgpt(tmp_path / "big.zip", total, turns=2)
    env = {**os.environ, "PARLEY_DATA_DIR": str(data_dir), "HOME": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # fmt: skip
    job = subprocess.Popen(
        [sys.executable, "-m", "lib.cli", "import", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    seen = []
    for line in job.stderr:  # wait for a progress line past the start: the import is under way
        seen.append(line)
        if "imported" in line and not line.lstrip().startswith("0%"):
            break
    job.send_signal(signal.SIGINT)
    out, err = job.communicate(timeout=WAIT)
    assert job.returncode == 130, (out, "".join(seen) + err)
    assert "Stopping after this conversation" in err and "Traceback" not in err
    assert "Cancelled: the conversations above were imported whole, the rest not." in out
    local = ConversationStore(backend, "local")
    imported = local.list(limit=total)
    assert 0 < len(imported) < total
    assert all(len(local.all_messages(c.id)) == 4 for c in imported)  # each whole
