"""lib.illustrate and lib.jobs: a prompt from the last exchange, images linked both ways,
and the background job the pages poll while an image is being made."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest

from lib import chat, errors, export, illustrate
from lib.client import build_client
from lib.conversations import ConversationStore, Message
from lib.gallery import ImageStore
from lib.image_models import default_request
from lib.images import GenerationResult, Preview, generate
from lib.jobs import BackgroundJob
from lib.pricing import PriceTable
from lib.settings import resolve_settings
from lib.store.backend import Backend
from tests.fake_openai import FakeOpenAI
from tests.waits import WAIT


@pytest.fixture
def ctx(openai_server: FakeOpenAI, backend: Backend, data_dir: Path) -> chat.ChatContext:
    settings = resolve_settings(
        {}, {}, {"OPENAI_BASE_URL": openai_server.base_url, "OPENAI_API_KEY": "sk-test"}
    )
    settings = dataclasses.replace(settings, provider="openai", timeout=WAIT)
    store = ConversationStore(backend, "local")
    return chat.ChatContext(store, build_client(settings), PriceTable.load(data_dir))


@pytest.fixture
def images(backend: Backend) -> ImageStore:
    return ImageStore(backend, "local")


def conversation(ctx: chat.ChatContext, *turns: tuple[str, str]) -> str:
    cid = ctx.store.create(model="gpt-4o").id
    for role, text in turns:
        ctx.store.add_message(cid, Message(role=role, content=text))
    return cid


def test_prompt_is_written_from_the_last_exchange_only(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = conversation(
        ctx,
        ("user", "Tell me about tax law"),
        ("assistant", "Tax law is complicated."),
        ("user", "Describe a lighthouse in a storm"),
        ("assistant", "Waves crash against a white tower under a bruised sky."),
    )
    openai_server.script('"A white lighthouse in a violent storm, oil painting"')
    draft = illustrate.write_prompt(ctx, cid)
    assert draft.text == "A white lighthouse in a violent storm, oil painting"  # quotes dropped
    assert draft.model == "gpt-4o" and draft.cost is not None and draft.cost > 0
    sent = openai_server.requests_to("/chat/completions")[-1].json
    assert sent["model"] == "gpt-4o" and not sent.get("stream")
    excerpt = sent["messages"][-1]["content"]
    assert "lighthouse in a storm" in excerpt and "bruised sky" in excerpt
    assert "tax law" not in excerpt.lower()
    assert ctx.store.count_messages(cid) == 4  # writing a prompt adds no message


def test_nothing_to_illustrate_in_an_empty_conversation(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = conversation(ctx)
    with pytest.raises(errors.InvalidInputError, match="nothing to illustrate"):
        illustrate.write_prompt(ctx, cid)
    assert openai_server.requests == []


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (dict(status=429, times=10), errors.RateLimited),
        (dict(status=401), errors.AuthenticationFailed),
    ],
)
def test_prompt_writing_failures_are_domain_errors(
    ctx: chat.ChatContext, openai_server: FakeOpenAI, fault: dict, error: type
) -> None:
    cid = conversation(ctx, ("user", "Draw me a sheep"))
    openai_server.fail(**fault)
    with pytest.raises(error):
        no_retries = dataclasses.replace(ctx, client=ctx.client.with_options(max_retries=0))
        illustrate.write_prompt(no_retries, cid)


def test_an_empty_prompt_from_the_model_is_an_error(
    ctx: chat.ChatContext, openai_server: FakeOpenAI
) -> None:
    cid = conversation(ctx, ("user", "Draw me a sheep"))
    openai_server.script("   ")
    with pytest.raises(errors.ProviderError, match="did not write a prompt"):
        illustrate.write_prompt(ctx, cid)


def test_attach_links_images_and_conversation_both_ways(
    ctx: chat.ChatContext, images: ImageStore
) -> None:
    cid = conversation(ctx, ("user", "A fox?"), ("assistant", "A red fox in snow."))
    (result,) = list(
        generate(ctx.client, default_request("a red fox in snow", "gpt-image-2"), prices=ctx.prices)
    )
    saved, message = illustrate.attach(ctx, images, cid, result, prompt_cost=0.001)
    assert [i.conversation_id for i in saved] == [cid]
    assert message.meta["images"] == [saved[0].id] and message.meta["kind"] == "illustration"
    assert message.cost == pytest.approx(result.cost + 0.001)
    last = ctx.store.all_messages(cid)[-1]
    assert last.role == "assistant" and last.meta["images"] == [saved[0].id]
    assert "a red fox in snow" in last.content
    exported = json.loads(export.to_json(ctx.store.get(cid), [last]))
    assert exported["messages"][0]["images"] == [saved[0].id]
    assert [i.id for i in images.for_conversation(cid)] == [saved[0].id]
    # An earlier illustration is not the "last exchange" for the next prompt.
    assert [m.content for m in illustrate.last_exchange(ctx, cid)] == [
        "A fox?",
        "A red fox in snow.",
    ]


def test_a_chat_after_an_illustration_still_works(
    ctx: chat.ChatContext, images: ImageStore, openai_server: FakeOpenAI
) -> None:
    cid = conversation(ctx, ("user", "A fox?"), ("assistant", "A red fox."))
    (result,) = list(generate(ctx.client, default_request("a red fox", "gpt-image-2")))
    illustrate.attach(ctx, images, cid, result)
    assert "".join(chat.send(ctx, cid, "Now a wolf")) == "Echo: Now a wolf"
    roles = [m["role"] for m in openai_server.requests_to("/chat/completions")[-1].json["messages"]]
    # The illustration is a record in the transcript, not a reply the model gave.
    assert roles == ["user", "assistant", "user"]


def test_attach_refuses_an_image_store_of_another_workspace(
    ctx: chat.ChatContext, backend: Backend
) -> None:
    cid = conversation(ctx, ("user", "A fox?"))
    (result,) = list(generate(ctx.client, default_request("a fox", "gpt-image-2")))
    elsewhere = ImageStore(backend, "someone-else")
    with pytest.raises(ValueError, match="different workspaces"):
        illustrate.attach(ctx, elsewhere, cid, result)
    assert elsewhere.list() == [] and ctx.store.count_messages(cid) == 1


def test_background_job_streams_events_and_returns_its_result() -> None:
    release = threading.Event()

    def task(emit):  # noqa: ANN001, ANN202
        emit("first")
        release.wait(WAIT)
        emit("second")
        return 42

    job = BackgroundJob(task, name="test")
    assert job.updates(timeout=WAIT) == ["first"] and not job.done
    release.set()
    assert job.wait(WAIT) and job.result == 42 and job.error is None
    assert job.updates(timeout=WAIT) == ["second"] and job.latest == "second"
    assert job.updates(timeout=0.05) == []
    frozen = job.elapsed
    assert job.elapsed == frozen  # the clock stops when the job ends


def test_background_job_keeps_the_error_for_the_page() -> None:
    def task(emit):  # noqa: ANN001, ANN202
        raise errors.RateLimited("Rate limited (429).")

    job = BackgroundJob(task)
    assert job.wait(5) and isinstance(job.error, errors.RateLimited) and job.result is None


def test_a_generation_job_saves_even_if_nobody_polls(
    ctx: chat.ChatContext, images: ImageStore, openai_server: FakeOpenAI
) -> None:
    request = dataclasses.replace(
        default_request("a quiet harbour", "gpt-image-2"), partial_images=1
    )
    events = generate(ctx.client, request)

    def task(emit):  # noqa: ANN001, ANN202
        for event in events:
            if isinstance(event, Preview):
                emit(event)
            else:
                assert isinstance(event, GenerationResult)
                return images.save(event)
        return None

    job = BackgroundJob(task)
    assert job.wait(10) and job.error is None
    assert [i.prompt for i in images.list()] == ["a quiet harbour"]
    assert isinstance(job.latest, Preview)
