"""The Images page and the Chat page's Illustrate action under AppTest, against the local
OpenAI-compatible server: generation, validation before any request, errors that keep
the prompt, the gallery across sessions, deletion, reuse and search."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore, Message
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GenerationResult, checked_image
from lib.store.backend import Backend
from tests.fake_images import render_png
from tests.fake_openai import FakeOpenAI

IMAGES = "app_pages/images.py"
PROMPT = "parley.w.img.prompt"
GO = "parley.w.img.go"


@pytest.fixture
def images(backend: Backend) -> ImageStore:
    """The gallery the pages show (local's), on each backend in turn."""
    return ImageStore(backend, "local")


@pytest.fixture
def conversations(backend: Backend) -> ConversationStore:
    return ConversationStore(backend, "local")


def w(model: str, name: str) -> str:
    """The key of a per-model option widget."""
    return f"parley.w.img.{model}.{name}"


def images_page(app: Callable[..., AppTest], **secrets: str) -> AppTest:
    """The Images page, on the fake server standing in for OpenAI's image API (its prices
    and its models) unless `PARLEY_PROVIDER` says otherwise."""
    secrets.setdefault("PARLEY_PROVIDER", "openai")
    at = app(IMAGES, **secrets)
    at.run()
    assert not at.exception, at.exception
    return at


def generate(at: AppTest, prompt: str) -> AppTest:
    at.text_area(key=PROMPT).input(prompt)
    at.button(key=GO).click().run()
    assert not at.exception, at.exception
    return at


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.caption)


def image_count(at: AppTest) -> int:
    return len(at.get("image"))


def generations(server: FakeOpenAI) -> list:
    return server.requests_to("/images/generations")


def test_generate_saves_and_shows_the_image_with_usage_and_cost(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, images: ImageStore
) -> None:
    at = generate(images_page(app), "a red kite over the sea")
    assert not at.error
    (sent,) = generations(openai_server)
    assert sent.json["prompt"] == "a red kite over the sea" and sent.json["model"] == "gpt-image-2"
    assert sent.json["stream"] is True and sent.json["partial_images"] == 2  # live previews
    (saved,) = images.list()
    assert images.has_file(saved)
    urls = [img.url for shown in at.get("image") for img in shown.proto.imgs]
    # Served by Streamlit from the bytes the store read: no key or path reaches the page.
    assert all("/media/" in u and saved.id not in u and saved.file not in u for u in urls)
    text = captions(at)
    assert "1 image · gpt-image-2 · auto" in text and "272 out tokens" in text
    assert "$0.0087" in text  # (3 in × $5 + 272 out × $32) per million tokens
    assert "a red kite over the sea" in text  # the gallery tile
    assert image_count(at) == 2  # "Latest" and the gallery tile
    assert at.text_area(key=PROMPT).value == "a red kite over the sea"


def test_legacy_model_controls_url_shape_and_revised_prompt(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    openai_server.models.append("dall-e-3")
    openai_server.image_shape = "url"
    openai_server.revise_prompts = True
    at = images_page(app)
    assert at.selectbox(key="parley.w.img.model").value == "gpt-image-2"  # never the retired one
    at.selectbox(key="parley.w.img.model").set_value("dall-e-3").run()
    assert at.selectbox(key=w("dall-e-3", "size")).options == [
        "1024x1024",
        "1792x1024",
        "1024x1792",
    ]
    assert at.selectbox(key=w("dall-e-3", "quality")).options == ["standard", "hd"]
    keys = {e.key for e in at.selectbox} | {e.key for e in at.number_input}
    assert w("dall-e-3", "bg") not in keys and w("dall-e-3", "n") not in keys  # n is always 1
    at.selectbox(key=w("dall-e-3", "quality")).set_value("hd")
    generate(at, "a heron")
    assert generations(openai_server)[-1].json == {
        "model": "dall-e-3",
        "prompt": "a heron",
        "size": "1024x1024",
        "quality": "hd",
        "style": "vivid",
    }
    assert "Revised prompt:** A detailed, vivid illustration of a heron" in captions(at)
    assert "cost unknown" in captions(at)  # DALL-E reports no usage


@pytest.mark.parametrize(
    ("choices", "message"),
    [
        ({"bg": "transparent", "fmt": "jpeg"}, "transparent background needs PNG or WebP"),
        ({"size": "Custom…", "custom": "1000x1000"}, "multiples of 16"),
        ({"size": "Custom…", "custom": "4096x1024"}, "at most 3840"),
        ({"size": "Custom…", "custom": "large"}, "WIDTHxHEIGHT"),
    ],
)
def test_invalid_combinations_are_stopped_before_any_request(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, choices: dict, message: str
) -> None:
    at = images_page(app)
    for name, value in choices.items():
        widget = at.text_input(key=w("gpt-image-2", name)) if name == "custom" else None
        if widget is None:
            at.selectbox(key=w("gpt-image-2", name)).set_value(value).run()
        else:
            widget.input(value).run()
    generate(at, "a glass of water")
    assert message in at.error[0].value
    assert generations(openai_server) == []
    assert at.text_area(key=PROMPT).value == "a glass of water"


def test_an_empty_prompt_is_refused_without_a_request(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    at = images_page(app)
    at.button(key=GO).click().run()
    assert "Write a prompt first" in at.error[0].value and generations(openai_server) == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (dict(status=400, code="moderation_blocked"), "Refused by content policy"),
        (dict(status=400, code="content_policy_violation"), "Refused by content policy"),
        (dict(status=400, param="size", message="Invalid size for this model."), "Invalid size"),
        (dict(status=429, retry_after=0, times=4), "Rate limited (429)"),
    ],
)
def test_server_errors_are_explained_and_the_prompt_stays(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, fault: dict, message: str
) -> None:
    openai_server.fail(route="/images", **fault)
    at = generate(images_page(app), "a forbidden picture")
    assert message in at.error[0].value
    assert "Traceback" not in at.error[0].value and not at.exception
    assert at.text_area(key=PROMPT).value == "a forbidden picture"
    assert not at.button(key=GO).disabled  # the user can try again at once


def test_an_undecodable_image_is_explained(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, images: ImageStore
) -> None:
    openai_server.corrupt_images = True
    at = generate(images_page(app), "a broken picture")
    assert "could not be decoded" in at.error[0].value
    assert images.list() == []


def test_a_timeout_is_explained(app: Callable[..., AppTest], openai_server: FakeOpenAI) -> None:
    # PARLEY_TIMEOUT 0.25 s gives images 1 s; a timed-out generation is never resent.
    openai_server.hang(3, route="/images")
    at = generate(images_page(app, PARLEY_TIMEOUT="0.25"), "a slow picture")
    assert "timed out" in at.error[0].value
    assert at.text_area(key=PROMPT).value == "a slow picture"
    assert len(openai_server.requests_to("/images/generations")) == 1


@pytest.mark.parametrize(
    ("priced", "cost"),
    # "$0" as the whole amount (the seconds may follow, or not when they round to 0.0).
    [(False, r"\\\$0(?![.\d])"), (True, r"\$0\.0087")],  # (3 × $5 + 272 × $32) per million
    ids=["unpriced", "priced for this server"],
)
def test_a_custom_server_is_charged_only_its_own_price(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    data_dir: Path,
    priced: bool,
    cost: str,
) -> None:
    if priced:
        data_dir.mkdir(parents=True, exist_ok=True)
        (data_dir / "prices.toml").write_text(
            f'[server."{openai_server.base_url}".image."gpt-image-2"]\ninput = 5\noutput = 32\n'
        )
    at = generate(images_page(app, PARLEY_PROVIDER="custom"), "a red kite over the sea")
    assert not at.error
    assert "272 out tokens" in captions(at) and re.search(cost, captions(at))


def test_a_server_without_image_generation_says_so_before_any_request(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    openai_server.flavour("llama-server")  # 404 at /v1/images/generations
    at = images_page(app, PARLEY_PROVIDER="custom")
    assert "This server has no image generation" in at.info[0].value
    assert not at.main.button  # no Generate button, so no request that would only fail
    assert "Choose another model" not in at.info[0].value
    # The one request was the capability probe, which has no prompt and so cannot generate.
    (probe,) = generations(openai_server)
    assert "prompt" not in probe.json


def test_the_gallery_survives_a_fresh_session_and_deletes_for_good(
    app: Callable[..., AppTest], images: ImageStore
) -> None:
    generate(images_page(app), "a lighthouse at dusk")
    (saved,) = images.list()
    assert images.has_file(saved)

    fresh = images_page(app)  # a new browser session, as after a reload or a restart
    assert "a lighthouse at dusk" in captions(fresh) and image_count(fresh) == 1
    assert "Latest" not in [h.value for h in fresh.subheader]  # that was the other session's
    fresh.button(key=f"img_del_{saved.id}").click().run()
    assert not fresh.exception
    assert "No images yet" in captions(fresh) and image_count(fresh) == 0
    assert not images.has_file(saved) and images.list() == []
    assert list(images.blobs.keys(saved.file.split("/")[0])) == []  # and its thumbnail


def test_reuse_puts_the_prompt_and_model_back_and_search_filters(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, images: ImageStore
) -> None:
    openai_server.models.append("gpt-image-1.5")
    at = images_page(app)
    generate(at, "a red fox in snow")
    at.selectbox(key="parley.w.img.model").set_value("gpt-image-1.5").run()
    generate(at, "a lighthouse at dusk")
    fox = images.list(query="fox")[0]
    at.text_area(key=PROMPT).input("something else").run()
    at.button(key=f"img_reuse_{fox.id}").click().run()
    assert at.text_area(key=PROMPT).value == "a red fox in snow"
    assert at.selectbox(key="parley.w.img.model").value == "gpt-image-2"
    at.text_input(key="parley.w.img.search").input("lighthouse").run()
    assert "a lighthouse at dusk" in captions(at) and "a red fox in snow" not in captions(at)
    assert "1 image matching" in captions(at)


def test_without_a_key_the_gallery_still_shows(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, images: ImageStore
) -> None:
    generate(images_page(app), "kept without a key")
    at = images_page(app, key=None, PARLEY_PROVIDER="openai")
    assert "Add an API key to generate images" in at.info[0].value
    assert "kept without a key" in captions(at) and image_count(at) == 1


def illustrated_chat(app: Callable[..., AppTest], server: FakeOpenAI) -> AppTest:
    at = app()
    at.run()
    server.script("Waves crash against a white tower under a bruised sky.")
    at.chat_input[0].set_value("Describe a lighthouse in a storm").run()
    server.script("A white lighthouse in a violent storm, oil painting")
    at.button(key="parley.w.illustrate").click().run()
    assert not at.exception, at.exception
    return at


def prompt_box(at: AppTest):  # noqa: ANN201 - a TextArea
    return next(t for t in at.text_area if t.label == "Image prompt")


def test_illustrate_writes_an_editable_prompt_then_links_the_image_both_ways(
    app: Callable[..., AppTest],
    openai_server: FakeOpenAI,
    conversations: ConversationStore,
    images: ImageStore,
) -> None:
    at = illustrated_chat(app, openai_server)
    assert prompt_box(at).value == "A white lighthouse in a violent storm, oil painting"
    assert generations(openai_server) == []  # nothing is generated before the user agrees
    prompt_box(at).input("A white lighthouse in a storm, watercolour")
    at.button(key="parley.w.illustrate.go").click().run()
    assert not at.exception and not at.error
    assert (
        generations(openai_server)[-1].json["prompt"]
        == "A white lighthouse in a storm, watercolour"
    )
    last = at.chat_message[-1]
    assert last.name == "assistant" and "watercolour" in last.markdown[0].value
    assert len(last.get("image")) == 1
    assert not [t for t in at.text_area if t.label == "Image prompt"]  # the editor closed
    (conv,) = conversations.list()
    (image,) = images.list()
    assert image.conversation_id == conv.id
    assert conversations.all_messages(conv.id)[-1].meta["images"] == [image.id]

    gallery = images_page(app)
    assert "A white lighthouse in a storm, watercolour" in captions(gallery)


def test_illustrate_errors_keep_the_edited_prompt(
    app: Callable[..., AppTest], openai_server: FakeOpenAI, conversations: ConversationStore
) -> None:
    at = illustrated_chat(app, openai_server)
    prompt_box(at).input("my careful edit")
    openai_server.fail(400, code="moderation_blocked", route="/images")
    at.button(key="parley.w.illustrate.go").click().run()
    assert "Refused by content policy" in at.error[0].value
    assert prompt_box(at).value == "my careful edit"
    (conv,) = conversations.list()
    assert conversations.count_messages(conv.id) == 2  # no illustration message was added
    at.button(key="parley.w.illustrate.cancel").click().run()
    assert not [t for t in at.text_area if t.label == "Image prompt"]


def test_illustrate_when_the_chat_model_fails_lets_the_user_write_the_prompt(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    at = app()
    at.run()
    at.chat_input[0].set_value("Describe a lighthouse").run()
    openai_server.fail(400, route="/chat/completions", message="Unsupported model.")
    at.button(key="parley.w.illustrate").click().run()
    assert "You can write the prompt yourself" in at.warning[0].value
    assert prompt_box(at).value == ""


def test_the_page_shows_only_this_workspaces_images(
    app: Callable[..., AppTest], backend: Backend, conversations: ConversationStore
) -> None:
    other = ImageStore(backend, "someone-else").save(
        GenerationResult(
            default_request("their private picture", "gpt-image-2"),
            [checked_image(render_png("x"))],
            None,
            None,
            1.0,
        ),
    )
    at = images_page(app)
    assert "their private picture" not in captions(at) and image_count(at) == 0
    at.text_input(key="parley.w.img.search").input("private").run()
    assert "No image matches" in captions(at)

    # A message naming another workspace's image id shows nothing of it either.
    conv = conversations.create(model="gpt-5-mini")
    conversations.add_message(conv.id, Message(role="user", content="hi"))
    conversations.add_message(
        conv.id,
        dataclasses.replace(
            Message(role="assistant", content="*Illustration:* x"), meta={"images": [other[0].id]}
        ),
    )
    chat = app()
    chat.query_params["c"] = conv.id
    chat.run()
    assert not chat.exception and len(chat.chat_message[-1].get("image")) == 0
    assert "deleted from the gallery" in chat.chat_message[-1].caption[0].value
