"""Reading exports (lib/history/): each app's format into one shape with its tree, shown
path, models and files; ChatGPT's zip in both its old and its split form; and every kind
of bad file told apart with a message, before anything is imported."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from lib.errors import UnreadableExport
from lib.history import archive
from lib.history.apps import parse
from lib.history.archive import Export, Failure
from tests import history_samples as samples


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def read_all(path: Path) -> list:
    with Export(path) as export:
        return list(export.items())


def test_chatgpt_keeps_both_branches_the_shown_path_models_and_images() -> None:
    conv = parse(samples.chatgpt_conversation())
    assert conv.app == "chatgpt" and conv.source_id == "c-1" and conv.title == "Herons"
    assert [m.key for m in conv.messages] == ["u1", "a1", "u1b", "a1b", "u2", "a2"]
    by = {m.key: m for m in conv.messages}
    # The hidden system root and the tool node are left out; their children move up.
    assert by["u1"].parent is None and by["u1b"].parent is None
    assert by["a1b"].parent == "u1b"
    assert conv.branched()
    assert [m.content for m in conv.path()] == [
        "Where do grey herons nest? See:", "In tall trees by rivers.", "And in spring?",
        "Yes, every spring.",
    ]  # fmt: skip
    assert (by["a2"].model, by["a1"].model, by["u1"].model) == ("gpt-4o-mini", "gpt-4o", None)
    assert by["u1b"].files == ["file-Heron1"]
    assert conv.created_at == samples.T0 and by["a2"].created_at == samples.T0 + 7


def test_open_webui_keeps_siblings_the_current_leaf_pin_and_system_prompt() -> None:
    conv = parse(samples.openwebui_export()[0])
    assert conv.app == "openwebui" and conv.title == "Rowing" and conv.pinned
    assert conv.system_prompt == "Answer briefly." and conv.model == "llama3"
    assert [m.content for m in conv.path()] == ["What is a sculler?", "Someone who sculls a boat."]
    assert conv.branched() and conv.created_at == samples.T0


@pytest.mark.parametrize("tree", [False, True], ids=["flat", "messagesTree"])
def test_librechat_flat_and_nested_exports_read_alike(tree: bool) -> None:
    conv = parse(samples.librechat_export(tree=tree))
    assert conv.app == "librechat" and conv.source_id == "lc-1"
    assert [(m.role, m.content) for m in conv.path()] == [
        ("user", "Name a river bird."), ("assistant", "The grey heron."), ("user", "Another?"),
    ]  # fmt: skip
    assert conv.messages[1].model == "gpt-4o" and conv.system_prompt == "Be kind."
    assert conv.messages[0].created_at == pytest.approx(1700000001.0)


@pytest.mark.parametrize("split", [0, 2], ids=["conversations.json", "split files"])
def test_a_chatgpt_zip_yields_every_conversation_and_its_files(tmp_path, split) -> None:
    convs = [samples.chatgpt_conversation()] + [
        samples.simple_chatgpt(f"s{n}", f"Chat {n}") for n in range(4)
    ]
    path = write(tmp_path, "export.zip", samples.chatgpt_zip(convs, split=split))
    with Export(path) as export:
        items = list(export.items())
        assert [i.source_id for i in items] == ["c-1", "s0", "s1", "s2", "s3"]
        assert export.done == export.total > 0  # progress reaches the end
        name, data = export.file("file-Heron1")
    assert name == "file-Heron1-heron.png" and data == samples.PNG


@pytest.mark.parametrize(
    ("reference", "found"),
    [
        ("file-Ab1", "file-Ab1-heron.png"),  # ChatGPT: the asset id, then the name
        ("sediment://file_9", "file_9.webp"),  # a pointer's id, then the suffix
        ("notes.txt", "notes.txt"),  # the name itself (LibreChat, Open WebUI)
        ("dalle/file-Cd2", "file-Cd2-out.png"),  # in a folder of the zip too
        ("file-Ab", None),  # a prefix of an id is not the id
        ("heron.png", None),  # nor the end of a name
        ("file-Zz9", None),
    ],
)
def test_a_reference_finds_the_file_named_by_it(tmp_path, reference, found) -> None:
    members = {"conversations.json": "[]", "file-Ab1-heron.png": b"a",
               "file-Ab1-copy.png": b"b", "file_9.webp": b"c", "notes.txt": b"d",
               "dalle-generations/file-Cd2-out.png": b"e"}  # fmt: skip
    with Export(write(tmp_path, "export.zip", samples.zip_bytes(members))) as export:
        held = export.file(reference.split("://")[-1])
    assert (held[0] if held else None) == found
    if found == "file-Ab1-heron.png":  # the first of two with that id, as the zip has them
        assert held[1] == b"a"


def test_a_json_list_is_streamed_one_conversation_at_a_time(tmp_path, monkeypatch) -> None:
    """Parsing stops at the first item: nothing after it was needed to yield it."""
    path = write(tmp_path, "conversations.json", json.dumps(
        [samples.simple_chatgpt(f"s{n}", f"Chat {n}", words=200) for n in range(200)]
    ))  # fmt: skip
    with Export(path) as export:
        first = next(export.items())
        assert first.source_id == "s0"
        assert export.done < export.total / 4


def test_one_bad_conversation_fails_alone(tmp_path) -> None:
    good = samples.simple_chatgpt("ok", "Fine")
    path = write(tmp_path, "c.json", json.dumps([good, {"what": 1}, {"mapping": {}}, good]))
    items = read_all(path)
    assert [type(i).__name__ for i in items] == [
        "ImportedConversation", "Failure", "Failure", "ImportedConversation",
    ]  # fmt: skip
    assert "not an export from ChatGPT, Open WebUI, LibreChat or Parley" in items[1].reason
    assert "has no messages" in items[2].reason


def _bomb() -> bytes:
    import io

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("conversations.json", "w", force_zip64=True) as f:
            chunk = b" " * (1 << 20)
            for _ in range(300):
                f.write(chunk)
    return out.getvalue()


def _with_password() -> bytes:
    """A ChatGPT zip marked as encrypted, as a password-protected zip is: bit 0 of the
    general-purpose flags set in the local header and in the central directory."""
    data = bytearray(samples.chatgpt_zip([samples.simple_chatgpt("a", "A")]))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + offset] |= 0x1
            at = data.find(signature, at + 4)
    return bytes(data)


BAD = [
    ("empty.json", b"", "is empty"),
    ("locked.zip", _with_password(), "is protected by a password"),
    ("notes.zip", samples.zip_bytes({"readme.txt": "hello"}), "holds no conversations"),
    ("cut.zip", samples.chatgpt_zip([samples.simple_chatgpt("a", "A")])[:200], "truncated"),
    ("bomb.zip", _bomb(), "looks like a zip bomb"),
    ("photo.json", samples.PNG, "not JSON"),
    ("odd.json", json.dumps({"hello": "world"}), "not an export from ChatGPT"),
    ("broken.json", '{"parley_export": 1, "messages": [', "not valid JSON"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "data", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_files_say_what_is_wrong(tmp_path, name, data, message) -> None:
    path = write(tmp_path, name, data)
    with pytest.raises(UnreadableExport) as raised:
        items = read_all(path)
        if items and isinstance(items[0], Failure):
            raise UnreadableExport(items[0].reason)
    assert message in str(raised.value)


def test_a_truncated_list_says_how_much_was_read(tmp_path) -> None:
    text = json.dumps([samples.simple_chatgpt(f"s{n}", f"Chat {n}") for n in range(3)])
    path = write(tmp_path, "conversations.json", text[: len(text) - 40])
    read: list = []
    with pytest.raises(UnreadableExport, match=r"ends in the middle of conversation 3") as raised:
        with Export(path) as export:
            read.extend(export.items())
    assert len(read) == 2 and "The 2 before it were read" in str(raised.value)


def test_a_file_over_the_limit_is_refused_unread(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(archive, "MAX_EXPORT_BYTES", 1000)
    path = write(tmp_path, "big.json", "[" + " " * 2000 + "]")
    with pytest.raises(UnreadableExport, match="Parley imports exports of at most"):
        Export(path)


def test_parleys_attachments_come_with_their_bytes_when_the_json_holds_them() -> None:
    item = {"parley_export": 2, "id": "c1", "title": "Herons", "messages": [
        {"id": 1, "parent_id": None, "role": "user", "content": "Look", "attachments": [
            {"name": "heron.png", "kind": "image", "data_base64": "iVBORw0KGgo="},
            {"name": "broken.png", "kind": "image", "data_base64": "not base64!"},
            {"name": "gone.png", "kind": "image", "missing": True},
            "named.png", {"kind": "image"}, 7,
        ]},
    ]}  # fmt: skip
    (message,) = parse(item).messages
    assert message.files == ["heron.png", "broken.png", "gone.png", "named.png"]
    assert message.inline == {"heron.png": b"\x89PNG\r\n\x1a\n"}
