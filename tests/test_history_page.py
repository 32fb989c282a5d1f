"""The History page under AppTest, on both backends: an export uploaded and imported
shows an honest report, a second import adds nothing, a bad file says what is wrong and
leaves the workspace as it was, and a title holding Markdown is kept as it was written."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore
from lib.store.backend import Backend
from tests import history_samples as samples

PAGE = "app_pages/history.py"


@pytest.fixture
def page(app: Callable[..., AppTest], backend: Backend) -> AppTest:
    at = app(PAGE)
    at.run()
    assert not at.exception, at.exception
    return at


def import_file(at: AppTest, name: str, data: bytes, mime: str) -> AppTest:
    at.file_uploader[0].upload(name, data, mime)
    at.run()
    at.button(key="parley.w.import").click().run()
    assert not at.exception, at.exception
    return at


def test_an_export_is_imported_and_reported(page: AppTest, backend: Backend) -> None:
    hostile = samples.simple_chatgpt("x", "see [the docs](https://evil.example/login) **now**")
    data = samples.chatgpt_zip([samples.chatgpt_conversation(), hostile])
    import_file(page, "export.zip", data, "application/zip")
    assert [s.value for s in page.success] == [
        "2 conversations imported from export.zip (ChatGPT: 2)."
    ]
    assert "1 kept their branches" in " ".join(c.value for c in page.caption)
    titles = sorted(c.title for c in ConversationStore(backend, "local").list())
    assert titles == ["Herons", "see [the docs](https://evil.example/login) **now**"]
    import_file(page, "export.zip", data, "application/zip")
    assert "0 conversations imported" in page.success[0].value
    assert "2 skipped: already imported." in [c.value for c in page.caption]
    assert len(ConversationStore(backend, "local").list()) == 2


def test_a_bad_file_says_what_is_wrong_and_touches_nothing(page: AppTest, backend) -> None:
    store = ConversationStore(backend, "local")
    mine = store.create(model="gpt-4o", title="Mine")
    import_file(page, "odd.json", json.dumps({"hello": 1}).encode(), "application/json")
    assert "not an export from ChatGPT, Open WebUI, LibreChat or Parley" in page.error[0].value
    assert [c.id for c in store.list()] == [mine.id]
    page.button(key="parley.w.import_dismiss").click().run()
    assert not page.error


def test_everything_exports_as_one_zip_to_download(page: AppTest, backend: Backend) -> None:
    store = ConversationStore(backend, "local")
    conv = store.create(model="gpt-4o", title="Herons")
    from lib.conversation import Message

    store.add_message(conv.id, Message("user", "Where do herons nest?"))
    page.button(key="parley.w.export_all").click().run()
    assert not page.exception, page.exception
    assert page.success[0].value.startswith("Exported 1 conversation, 0 documents and 0 images")
    button = page.get("download_button")[0]
    assert button.proto.label == "Download the export"
