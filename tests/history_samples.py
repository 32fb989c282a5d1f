"""Exports as each app writes them, made here from their public formats: ChatGPT's data
export (a zip with `conversations.json`, or the newer split `conversations-000.json`...,
and image files named by asset id), Open WebUI's chat export (a JSON list), LibreChat's
conversation export (flat `messages` or a nested `messagesTree`), and generated large
ChatGPT exports for the bench and the streaming tests."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

T0 = 1_700_000_000.0


def _png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 110, 130)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()  # a heron's portrait, 8x8


def _node(nid: str, parent: str | None, children: list[str], message: dict | None) -> dict:
    return {"id": nid, "message": message, "parent": parent, "children": children}


def _msg(mid: str, role: str, parts: list[Any], t: float, **extra: Any) -> dict:
    content_type = "multimodal_text" if any(isinstance(p, dict) for p in parts) else "text"
    return {
        "id": mid,
        "author": {"role": role, "name": None, "metadata": {}},
        "create_time": t,
        "content": {"content_type": content_type, "parts": parts},
        "status": "finished_successfully",
        "metadata": extra.pop("metadata", {}),
        **extra,
    }


def chatgpt_conversation(cid: str = "c-1", title: str = "Herons") -> dict:
    """A hidden system root, a question edited once (two branches, the second shown), a
    tool call with its output, an image the user sent, and the model per reply."""
    hidden = _msg(
        "sys", "system", [""], T0, metadata={"is_visually_hidden_from_conversation": True}
    )
    mapping = {
        "root": _node("root", None, ["sys"], None),
        "sys": _node("sys", "root", ["u1", "u1b"], hidden),
        "u1": _node("u1", "sys", ["a1"], _msg("u1", "user", ["Where do herons nest?"], T0 + 1)),
        "a1": _node("a1", "u1", [], _msg("a1", "assistant", ["In trees."], T0 + 2,
                                         metadata={"model_slug": "gpt-4o"})),
        "u1b": _node("u1b", "sys", ["tool"], _msg(
            "u1b", "user", ["Where do grey herons nest? See:",
                            {"content_type": "image_asset_pointer",
                             "asset_pointer": "file-service://file-Heron1"}], T0 + 3)),
        "tool": _node("tool", "u1b", ["a1b"], _msg("tool", "tool", ["search results"], T0 + 4)),
        "a1b": _node("a1b", "tool", ["u2"], _msg("a1b", "assistant", ["In tall trees by rivers."],
                                                T0 + 5, metadata={"model_slug": "gpt-4o"})),
        "u2": _node("u2", "a1b", ["a2"], _msg("u2", "user", ["And in spring?"], T0 + 6)),
        "a2": _node("a2", "u2", [], _msg("a2", "assistant", ["Yes, every spring."], T0 + 7,
                                         metadata={"model_slug": "gpt-4o-mini"})),
    }  # fmt: skip
    return {
        "title": title,
        "create_time": T0,
        "update_time": T0 + 7,
        "mapping": mapping,
        "current_node": "a2",
        "conversation_id": cid,
        "id": cid,
        "default_model_slug": "gpt-4o",
    }


def simple_chatgpt(cid: str, title: str, turns: int = 2, words: int = 8) -> dict:
    mapping = {"root": _node("root", None, ["m0"], None)}
    previous = "root"
    for i in range(turns * 2):
        nid = f"m{i}"
        role = "user" if i % 2 == 0 else "assistant"
        text = " ".join(f"{title}-{i}-{w}" for w in range(words))
        mapping[previous]["children"] = [nid]
        mapping[nid] = _node(nid, previous, [], _msg(f"{cid}-{nid}", role, [text], T0 + i))
        previous = nid
    return {"title": title, "create_time": T0, "update_time": T0 + turns * 2,
            "mapping": mapping, "current_node": previous, "conversation_id": cid}  # fmt: skip


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def chatgpt_zip(conversations: list[dict], *, split: int = 0) -> bytes:
    """ChatGPT's data export; `split` > 0 writes the newer form, that many per file."""
    members: dict[str, bytes | str] = {
        "user.json": json.dumps({"id": "user-1", "email": "someone@example.com"}),
        "message_feedback.json": "[]",
        "file-Heron1-heron.png": PNG,
        "chat.html": "<html><body>not read</body></html>",
    }
    if split:
        for n, start in enumerate(range(0, len(conversations), split)):
            members[f"conversations-{n:03d}.json"] = json.dumps(
                conversations[start : start + split]
            )
    else:
        members["conversations.json"] = json.dumps(conversations)
    return zip_bytes(members)


def openwebui_export() -> list[dict]:
    messages = {
        "m1": {"id": "m1", "parentId": None, "childrenIds": ["m2", "m2b"], "role": "user",
               "content": "What is a sculler?", "timestamp": T0 + 1, "models": ["llama3"]},
        "m2": {"id": "m2", "parentId": "m1", "childrenIds": [], "role": "assistant",
               "content": "A rower with two oars.", "model": "llama3", "timestamp": T0 + 2},
        "m2b": {"id": "m2b", "parentId": "m1", "childrenIds": [], "role": "assistant",
                "content": "Someone who sculls a boat.", "model": "llama3",
                "timestamp": T0 + 3},
    }  # fmt: skip
    return [
        {
            "id": "owui-1",
            "user_id": "u",
            "title": "Rowing",
            "chat": {
                "id": "",
                "title": "Rowing",
                "models": ["llama3"],
                "params": {"system": "Answer briefly."},
                "history": {"messages": messages, "currentId": "m2b"},
                "messages": list(messages.values()),
                "timestamp": (T0) * 1000,
            },
            "updated_at": T0 + 3,
            "created_at": T0,
            "pinned": True,
            "folder_id": None,
        }
    ]


def librechat_export(*, tree: bool) -> dict:
    root = "00000000-0000-0000-0000-000000000000"
    flat = [
        {"messageId": "l1", "parentMessageId": root, "text": "Name a river bird.",
         "sender": "User", "isCreatedByUser": True, "createdAt": "2023-11-14T22:13:21.000Z"},
        {"messageId": "l2", "parentMessageId": "l1", "text": "The grey heron.",
         "sender": "GPT-4o", "isCreatedByUser": False, "model": "gpt-4o",
         "createdAt": "2023-11-14T22:13:25.000Z"},
        {"messageId": "l3", "parentMessageId": "l2", "text": "",
         "content": [{"type": "text", "text": "Another?"}], "sender": "User",
         "isCreatedByUser": True, "createdAt": "2023-11-14T22:14:00.000Z"},
    ]  # fmt: skip
    data: dict[str, Any] = {
        "conversationId": "lc-1",
        "title": "River birds",
        "endpoint": "openAI",
        "options": {"model": "gpt-4o", "promptPrefix": "Be kind."},
        "exportAt": "2023-11-15T00:00:00.000Z",
        "branches": False,
        "recursive": tree,
    }
    if tree:
        l1, l2, l3 = ({k: v for k, v in m.items() if k != "parentMessageId"} for m in flat)
        data["messagesTree"] = [{**l1, "children": [{**l2, "children": [{**l3, "children": []}]}]}]
    else:
        data["messages"] = flat
    return data


def write_big_chatgpt(
    path: Path,
    conversations: int,
    turns: int = 4,
    words: int = 8,
    *,
    images: int = 0,
    image_side: int = 600,
) -> Path:
    """A ChatGPT zip of `conversations` conversations, written as it goes (bench, tests).

    With `images`, that many PNGs of random pixels (`image_side` pixels square, about
    3 x side² bytes each, which no compressor shrinks) sit beside conversations.json, each
    sent by the first question of a conversation spread evenly through the export, as
    ChatGPT names them: `file-<id>-<name>`, pointed to by an `image_asset_pointer` part."""
    sent_in = {n * conversations // images: n for n in range(images)} if images else {}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with archive.open("conversations.json", "w", force_zip64=True) as f:
            f.write(b"[")
            for n in range(conversations):
                if n:
                    f.write(b",")
                conv = simple_chatgpt(f"big-{n}", f"Chat {n}", turns, words)
                if n in sent_in:
                    content = conv["mapping"]["m0"]["message"]["content"]
                    content["content_type"] = "multimodal_text"
                    content["parts"].append({"content_type": "image_asset_pointer",
                        "asset_pointer": f"file-service://file-Noise{sent_in[n]}"})  # fmt: skip
                f.write(json.dumps(conv).encode())
            f.write(b"]")
        for n in range(images):
            archive.writestr(f"file-Noise{n}-noise.png", noise_png(image_side))
    return path


def noise_png(side: int) -> bytes:
    """A PNG of random pixels: incompressible, and a real image the importer checks."""
    import os

    from PIL import Image

    out = io.BytesIO()
    img = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    img.save(out, format="PNG", compress_level=0)  # random: zlib would only spend time
    return out.getvalue()
