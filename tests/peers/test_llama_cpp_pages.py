"""Pages under AppTest against a real llama.cpp server, which has no image endpoint."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from tests.peers.conftest import LlamaServer

pytestmark = pytest.mark.peers
GO = "parley.w.img.go"
PROMPT = "parley.w.img.prompt"


def page_text(at: AppTest) -> str:
    shown = [*at.error, *at.warning, *at.info, *at.caption, *at.markdown]
    return "\n".join(str(e.value) for e in shown)


def test_the_images_page_says_the_server_has_no_image_generation(
    app: Callable[..., AppTest], llama_server: LlamaServer
) -> None:
    at = app("app_pages/images.py", key=None, OPENAI_BASE_URL=llama_server.base_url)
    at.run()
    assert not at.exception, at.exception
    generate = [b for b in at.button if b.key == GO]
    if generate and not generate[0].disabled:
        # Not said up front: a user would type a prompt and try.
        at.text_area(key=PROMPT).input("a heron in the reeds")
        at.button(key=GO).click().run()
        assert not at.exception, at.exception
    text = page_text(at)
    assert "no image generation" in text.lower(), text
    assert "404" not in text and "Choose another model" not in text, text
