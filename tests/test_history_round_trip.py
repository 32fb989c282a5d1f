"""A whole workspace exported and imported into another (lib/history/workspace_export.py,
then the importer), on both backends, compared field by field: every persisted field of
conversations, messages, attachments, folders, pins, document links and chat settings,
documents (pages, chunks) and images (row and file).

What must differ, and is left out of the comparison (each named where it is dropped):
- every id (conversation, message, attachment, document, image, image batch, chunk) and
  the workspace: the importing workspace makes its own, so ids are compared as positions
  (a parent as its index, a document by its name, an image by its prompt);
- times to below the millisecond: the JSON gives times in ISO 8601 to the millisecond
  (lib/export.py's `_iso`), so both sides are compared as that text;
- a message's meta gains `imported_from` ("parley") where it had none: where it first came
  from, which the importer records (a message imported from ChatGPT keeps "chatgpt");
- the copy's import ledger also records the export it was read from ("parley" and the
  source's conversation id), so importing that export again adds nothing;
- a document's embedding model (None: the import indexes keyword-only, with the note to
  re-index), its created/indexed times and report (the time of the import, and its
  timings), and an attachment's time: made by the import;
- a long file attachment's meta beyond its token count: how it was indexed when
  attached ("indexed"; on import "already in your library", as the documents come in
  first). The export does not carry attachments' meta (`AttachmentStore.export_entries`);
- a citation's `chunk_id`: chunks are cut again on import and numbered anew (no page
  reads it; its `document_id`, which "Show the page" reads, is mapped to the new one).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from lib.chat.attachments import AttachmentStore, checked_image
from lib.chat.with_documents import read_file
from lib.conversation import ChatParams, Message
from lib.conversations import ConversationStore
from lib.documents.ingest import Ingestor
from lib.documents.library import DocumentLibrary
from lib.export import _iso
from lib.gallery import ImageStore
from lib.history.importer import Importer
from lib.history.ledger import ImportLedger
from lib.history.workspace_export import export_workspace
from lib.history.workspace_import import document_ingestor
from lib.image_models import ImageRequest
from lib.images import GenerationResult, Usage
from lib.images import checked_image as checked_generated
from lib.store.backend import Backend
from tests.test_gallery import png
from tests.test_history_export import fill

RIVER = b"Kingfishers dig burrows in the banks of slow rivers.\n" * 30
LONG = "\n\n".join(
    f"Paragraph {n}: the otter swims the river at dusk, and {n} fish hide in the reeds."
    for n in range(900)
).encode()


def rich_workspace(backend: Backend, tmp_path) -> None:  # noqa: ANN001
    """Alice's workspace with one of each thing a workspace persists."""
    alice = fill(backend, tmp_path)  # two ChatGPT conversations (one branched, a PNG), notes.md
    library = DocumentLibrary(backend, "alice")
    (notes,) = library.list()
    river = Ingestor(library, None, limit_bytes=1 << 20).ingest("river.txt", RIVER)
    assert river.status == "indexed", river.message
    chunk = library.chunk_ids([river.document_id])[0]

    # A document chat, searching two documents chosen on the Documents page
    chat = alice.create(
        model="gpt-4o", kind="documents", title="About rivers", system_prompt="Cite.",
        params=ChatParams(temperature=0.3, top_p=0.9, max_tokens=500, stop=["END"],
                          memory_rounds=4, context_window=32_000),
    )  # fmt: skip
    library.set_conversation_documents(chat.id, [river.document_id, notes.id])
    library.set_chat_settings(chat.id, "retrieval", 3)
    question = alice.add_message(chat.id, Message(
        "user", "Where do kingfishers nest?", tokens=7, tokens_encoding="cl100k_base"))  # fmt: skip
    cite = {"n": 1, "file": "river.txt", "document_id": river.document_id, "chunk_id": int(chunk),
            "page": None, "label": "lines 1–3", "score": 0.5, "text": "Kingfishers"}  # fmt: skip
    alice.add_message(chat.id, Message(
        "assistant", "In burrows [1].", model="gpt-4o", tokens=5, tokens_encoding="o200k_base",
        prompt_tokens=120, completion_tokens=9, usage_exact=True, cost=0.0012,
        meta={"citations": [cite], "first_token_s": 0.4, "finish_reason": "stop",
              "rag": {"mode": "retrieval", "search": "keyword", "question": "kingfishers nest",
                      "sources": 1, "reason": "asked", "notes": ["keyword search only"]},
              "context": {"system": 40, "history": 0, "new": 7, "dropped": 0, "sources": 60,
                          "window": 128_000, "window_source": "catalogue",
                          "window_known": True, "estimate": False},
              "rewrite": {"prompt_tokens": 30, "completion_tokens": 5}},
    ))  # fmt: skip
    # An illustration: the image linked to its conversation, the message naming it
    request = ImageRequest(prompt="a kingfisher", model="gpt-image-1", size="1024x1024",
                           quality="high", background="transparent", n=1)  # fmt: skip
    generated = GenerationResult(request, [checked_generated(png(80, (0, 90, 200)), "bird")],
                                 Usage(12, 4160), 0.042, seconds=7.25)  # fmt: skip
    (image,) = ImageStore(backend, "alice").save(generated, conversation_id=chat.id)
    alice.add_message(chat.id, Message(
        "assistant", "*Illustration:* a kingfisher", model="gpt-image-1", usage_exact=True,
        cost=0.042, meta={"kind": "illustration", "images": [image.id], "prompt": "a kingfisher",
                          "revised_prompt": "bird"},
    ))  # fmt: skip

    kept_leaf = alice.get(chat.id).leaf_id
    for status, meta in [("stopped", {}), ("failed", {"error": "The server said 503."})]:
        alice.add_message(chat.id, Message("assistant", f"In bur ({status})", status=status,
                          model="gpt-4o-mini", meta=meta), parent=question.id)  # fmt: skip
    alice.set_leaf(chat.id, kept_leaf)  # the path shown is not the newest branch
    alice.set_folder(chat.id, "Rivers")

    # A chat with a short text file, an image and a long document attached, pinned
    files = AttachmentStore(backend, "alice")
    plain = alice.create(model="gpt-4o-mini", title="With files")
    ingestor = document_ingestor(backend, "alice")
    attached = [
        read_file("otter.md", b"# Otters\n\nThey hold hands asleep.", limit_bytes=1 << 20,
                  ingestor=ingestor),
        checked_image("pond.png", png(40, (10, 200, 10))),
        read_file("long.txt", LONG, limit_bytes=1 << 22, ingestor=ingestor),
    ]  # fmt: skip
    assert [a.kind for a in attached] == ["text", "image", "document"]
    files.save_message(plain.id, Message("user", "What do these say?"), attached)
    library.set_conversation_documents(plain.id, [attached[2].document_id])  # as the chat does
    alice.add_message(plain.id, Message("assistant", "Otters.", status="truncated",
                                        model="gpt-4o-mini", completion_tokens=4))  # fmt: skip
    alice.set_pinned(plain.id, True)


def snapshot(backend: Backend, workspace: str, copied_from: str = "") -> dict[str, Any]:
    """Everything the workspace persists, ids replaced by what they point at; with
    `copied_from`, less the import ledger's rows for that workspace's export (see the
    module's docstring)."""
    store = ConversationStore(backend, workspace)
    own = (
        {c.id for c in ConversationStore(backend, copied_from).list(limit=1000)}
        if copied_from
        else set()
    )
    sources = ImportLedger(backend, workspace).by_conversation()
    files = AttachmentStore(backend, workspace)
    library = DocumentLibrary(backend, workspace)
    gallery = ImageStore(backend, workspace)
    documents = {d.id: d for d in library.list()}
    conversations = store.list(limit=1000)
    titles = {c.id: c.title for c in conversations}
    prompts = {i.id: i.prompt for i in gallery.list(limit=1000)}
    out: dict[str, Any] = {"conversations": [], "documents": [], "images": []}
    for conv in conversations:  # in the list's order: pinned first, then by time
        tree = store.all_messages(conv.id)
        index = {m.id: i for i, m in enumerate(tree)}
        held = files.of(tree)
        messages = []
        for m in tree:
            meta = dict(m.meta)
            meta.pop("attachments", None)  # attachment ids: compared as the attachments below
            meta.setdefault("imported_from", "parley")  # see the module's docstring
            if "images" in meta:
                meta["images"] = [prompts.get(i, f"missing {i}") for i in meta["images"]]
            if "citations" in meta:
                meta["citations"] = [
                    {**{k: v for k, v in c.items() if k != "chunk_id"},
                     "document_id": getattr(documents.get(c["document_id"]), "name", "not here")}
                    for c in meta["citations"]
                ]  # fmt: skip
            messages.append({
                "parent": index.get(m.parent_id), "role": m.role, "content": m.content,
                "status": m.status, "model": m.model, "tokens": m.tokens,
                "tokens_encoding": m.tokens_encoding, "prompt_tokens": m.prompt_tokens,
                "completion_tokens": m.completion_tokens, "usage_exact": m.usage_exact,
                "cost": m.cost, "meta": meta, "created_at": _iso(m.created_at),
                "attachments": [{
                    "kind": a.kind, "name": a.name, "mime": a.mime, "size": a.size,
                    "sha256": a.sha256, "width": a.width, "height": a.height, "text": a.text,
                    "tokens": a.tokens, "file": files.read(a),
                    # a long file's meta is its indexing report: see the module's docstring
                    "meta": a.meta if a.kind != "document" else a.meta.get("tokens"),
                    "thumb": a.thumb is not None, "sent": a.sent is not None,
                    "document": documents[a.document_id].name if a.document_id else None,
                } for a in held.get(m.id, [])],
            })  # fmt: skip
        out["conversations"].append({
            "title": conv.title, "kind": conv.kind, "model": conv.model,
            "system_prompt": conv.system_prompt, "params": conv.params,
            "created_at": _iso(conv.created_at), "updated_at": _iso(conv.updated_at),
            "pinned": conv.pinned, "folder": conv.folder,
            "leaf": index.get(conv.leaf_id), "messages": messages,
            "documents": [documents[d].name for d in library.conversation_documents(conv.id)],
            "chat_settings": library.chat_settings(conv.id),
            "images": [i.prompt for i in gallery.for_conversation(conv.id)],
            "imported": sorted(
                (app, source) for app, source, _ in sources.get(conv.id, [])
                if not (app == "parley" and source in own)
            ),
        })  # fmt: skip
    out["folders"] = store.folders()
    for doc in documents.values():
        _, chunks = library.chunk_texts(doc.id)
        pages = [(p.page, p.number, p.label, p.tokens, p.text) for p in library.pages([doc.id])]
        out["documents"].append({
            "name": doc.name, "sha256": doc.sha256, "size": doc.size, "kind": doc.kind,
            "status": doc.status, "tokens": doc.tokens, "file": library.read_file(doc),
            "pages": pages, "chunks": chunks,
        })  # fmt: skip
    for image in gallery.list(limit=1000):
        meta = dict(image.meta)
        out["images"].append({
            "prompt": image.prompt, "revised_prompt": image.revised_prompt,
            "model": image.model, "size": image.size, "quality": image.quality,
            "background": image.background, "mime": image.mime, "width": image.width,
            "height": image.height, "bytes": image.bytes, "position": image.position,
            "conversation": titles.get(image.conversation_id),
            "input_tokens": image.input_tokens, "output_tokens": image.output_tokens,
            "cost": image.cost, "meta": meta, "created_at": _iso(image.created_at),
            "file": hashlib.sha256(gallery.read(image)).hexdigest(),
            "thumb": image.thumb is not None,
        })  # fmt: skip
    return out


def test_a_workspace_comes_back_field_for_field(backend, tmp_path) -> None:
    rich_workspace(backend, tmp_path)
    before = snapshot(backend, "alice")
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    report = Importer(ConversationStore(backend, "bob")).run(summary.path)
    assert len(report.imported) == 4 and not report.failed and not report.missing_files
    assert report.files is not None and not report.files.failed, report.files.failed
    after = snapshot(backend, "bob", copied_from="alice")
    for part in ("documents", "images", "folders"):
        assert after[part] == before[part], part
    for source, copy in zip(before["conversations"], after["conversations"], strict=True):
        for key in source:
            if key != "messages":
                assert copy[key] == source[key], (source["title"], key)
        for n, (was, now) in enumerate(zip(source["messages"], copy["messages"], strict=True)):
            assert now == was, (source["title"], n)
    assert after == before  # and nothing else
    # What the comparison relies on, seen in the source itself
    chat = next(c for c in before["conversations"] if c["title"] == "About rivers")
    assert chat["documents"] == ["../notes.md", "river.txt"] and chat["kind"] == "documents"
    assert chat["chat_settings"] == ("retrieval", 3) and chat["images"] == ["a kingfisher"]
    assert {m["status"] for m in chat["messages"]} == {"ok", "stopped", "failed"}
    assert chat["leaf"] == 2 and chat["messages"][2]["meta"]["images"] == ["a kingfisher"]
    assert [len(c["documents"]) for c in before["conversations"]] == [1, 2, 0, 0]
    assert [c["imported"] for c in before["conversations"]][2:] == [
        [("chatgpt", "c-1")],
        [("chatgpt", "s1")],
    ]
    # The copy knows where its conversations came from: the ChatGPT export adds nothing
    again = Importer(ConversationStore(backend, "bob")).run(tmp_path / "chatgpt.zip")
    assert (again.imported, again.skipped) == ([], 2)


def test_a_document_link_without_an_attachment_survives_an_import_run_twice(
    backend, tmp_path
) -> None:
    rich_workspace(backend, tmp_path)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    bob = ConversationStore(backend, "bob")
    Importer(bob).run(summary.path)
    again = Importer(bob).run(summary.path)
    assert (len(again.imported), again.skipped) == (0, 4)
    assert again.files is not None and again.files.documents_skipped == 3
    assert snapshot(backend, "bob", copied_from="alice") == snapshot(backend, "alice")


def test_an_older_workspace_export_still_imports(backend, tmp_path) -> None:
    """Format 2 (no ids, links or image rows in the manifest; messages without meta):
    conversations, documents and images come in, linked through attachments only."""
    import json
    import zipfile

    rich_workspace(backend, tmp_path)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    older = tmp_path / "older.zip"
    with zipfile.ZipFile(summary.path) as source, zipfile.ZipFile(older, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "manifest.json":
                manifest = json.loads(data)
                manifest["parley_workspace"] = 2
                del manifest["links"]
                for entry in manifest["library"]:
                    del entry["id"]
                keep = ("member", "prompt", "revised_prompt", "model", "size", "created_at")
                manifest["gallery"] = [{k: e[k] for k in keep} for e in manifest["gallery"]]
                data = json.dumps(manifest).encode()
            elif info.filename.startswith("conversations/"):
                conv = json.loads(data)
                for m in conv["messages"]:
                    for key in ("meta", "tokens", "tokens_encoding", "usage_exact"):
                        m.pop(key)
                data = json.dumps(conv).encode()
            target.writestr(info, data)
    bob = ConversationStore(backend, "bob")
    report = Importer(bob).run(older)
    assert len(report.imported) == 4 and report.files is not None and not report.files.failed
    after = snapshot(backend, "bob")
    assert [d["name"] for d in after["documents"]] == [
        d["name"] for d in snapshot(backend, "alice")["documents"]
    ]
    chat = next(c for c in after["conversations"] if c["title"] == "About rivers")
    assert chat["documents"] == [] and chat["images"] == []  # format 2 held no links
    assert [m["status"] for m in chat["messages"]] == ["ok", "ok", "ok", "stopped", "failed"]
    answer, illustration = chat["messages"][1:3]
    (cite,) = answer["meta"]["citations"]  # the JSON held citations, but no document ids
    assert (cite["file"], cite["document_id"]) == ("river.txt", "not here")
    assert answer["tokens"] is None and answer["prompt_tokens"] == 120  # and usage, not counts
    assert illustration["meta"]["images"] == []  # with no image ids, no image to show
    with_files = next(c for c in after["conversations"] if c["title"] == "With files")
    assert with_files["documents"] == ["long.txt"]  # through its attachment


@pytest.mark.parametrize(
    ("status", "meta", "kept_status", "kept_meta"),
    [
        (
            "stopped",
            {"rag": {"mode": "whole", "sources": 2}},
            "stopped",
            {"rag": {"mode": "whole", "sources": 2}},
        ),
        ("streaming", {"owner": {"pid": 1, "host": "h"}}, "interrupted", {}),
        ("no-such-status", {"attachments": ["a1"], "error": "x"}, "ok", {"error": "x"}),
        (7, "not a dict", "ok", {}),
    ],
    ids=["kept", "streaming-is-cut-off", "unknown-status", "wrong-types"],
)
def test_a_parley_message_keeps_its_status_and_meta_but_not_this_machines(
    store_alice, tmp_path, status, meta, kept_status, kept_meta
) -> None:
    """A reply exported while it streamed has no process writing it in the copy; its
    writer's pid and host, and attachment ids, mean nothing elsewhere."""
    import json

    conv = {"parley_export": 2, "id": "c1", "title": "Statuses", "kind": "chat",
            "params": {"temperature": 9}, "messages": [  # a temperature Parley refuses
        {"id": 1, "parent_id": None, "role": "user", "content": "Hi"},
        {"id": 2, "parent_id": 1, "role": "assistant", "content": "He", "status": status,
         "meta": meta, "tokens": True, "cost": "free"},
    ]}  # fmt: skip
    path = tmp_path / "one.json"
    path.write_text(json.dumps(conv))
    (cid,) = Importer(store_alice).run(path).imported
    reply = store_alice.path(cid)[-1]
    assert (reply.status, reply.tokens, reply.cost) == (kept_status, None, None)
    assert reply.meta == {**kept_meta, "imported_from": "parley"}
    assert store_alice.get(cid).params == ChatParams()  # the defaults, not temperature 9


@pytest.fixture
def store_alice(backend: Backend) -> ConversationStore:
    return ConversationStore(backend, "alice")


def test_cancel_while_documents_come_in_reports_those_that_did(backend, tmp_path) -> None:
    rich_workspace(backend, tmp_path)
    summary = export_workspace(backend, "alice", tmp_path / "all.zip")
    asked = []

    def cancelled() -> bool:  # the second question: after the first document
        asked.append(1)
        return len(asked) > 1

    bob = ConversationStore(backend, "bob")
    report = Importer(bob, cancelled=cancelled).run(summary.path)
    assert report.cancelled and report.imported == [] and report.files is not None
    assert report.files.documents == ["../notes.md"]  # the oldest, exported first
    lines = "\n".join(report.lines())
    assert "1 document imported." in lines and "Cancelled" in lines
    assert [d.name for d in DocumentLibrary(backend, "bob").list()] == ["../notes.md"]
    assert bob.list() == []


CITED = {"n": 1, "file": "a.pdf", "page": 3, "score": 0.5, "text": "Herons."}


@pytest.mark.parametrize(
    ("meta", "kept"),
    [
        ({"citations": [CITED]}, {"citations": [CITED]}),
        ({"citations": [{**CITED, "n": "[x](http://evil)"}, "text", {"file": "a.pdf"}]},
         {"citations": []}),  # the label shows `n` as it is: only a number
        ({"citations": [{**CITED, "score": "high", "page": "3", "extra": 1}]},
         {"citations": [{"n": 1, "file": "a.pdf", "text": "Herons."}]}),
        ({"citations": {"n": 1}}, {}),
        ({"images": ["i1", {"id": 1}]}, {}),
        ({"context": {"system": 1, "history": 2, "new": 3, "dropped": 0, "window": 0}}, {}),
        ({"context": {"system": "1", "history": 2, "new": 3, "dropped": 0, "window": 9}}, {}),
        ({"rag": {"mode": "whole"}}, {}),  # the pages read its `sources`
        ({"rag": {"mode": "whole", "sources": 2, "notes": [1]}},
         {"rag": {"mode": "whole", "sources": 2}}),
        ({"error": ["not", "text"], "limit": True, "first_token_s": "soon"}, {}),
        ({"theme": "dark", "nested": {"a": 1}, "listed": [1]}, {"theme": "dark"}),
    ],
    ids=["citation-kept", "citation-n-not-a-number", "citation-fields-of-wrong-types",
         "citations-not-a-list", "images-not-all-ids", "context-window-zero",
         "context-field-of-wrong-type", "rag-without-sources", "rag-notes-not-text",
         "scalars-of-wrong-types", "unknown-keys-only-plain"],
)  # fmt: skip
def test_a_parley_messages_meta_is_held_to_the_shapes_parley_writes(
    store_alice, tmp_path, meta, kept
) -> None:
    """The pages read meta unchecked (an `n` into a label, a score through :.2f, a
    division by the window): an export's meta is checked before it is stored."""
    import json

    message = {"id": 1, "parent_id": None, "role": "assistant", "content": "Hm", "meta": meta}
    conv = {"parley_export": 2, "id": "c1", "title": "Odd meta", "messages": [message]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(conv))
    (cid,) = Importer(store_alice).run(path).imported
    assert store_alice.path(cid)[0].meta == {**kept, "imported_from": "parley"}
