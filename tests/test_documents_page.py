"""The Documents page under AppTest, on both backends: upload through the file uploader,
index, ask, and see cited sources; the library's delete and re-index; keyword-only mode;
the upload limit."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from lib.conversations import ConversationStore, Message
from lib.documents import rag
from lib.documents.chunking import split_pages
from lib.documents.extract import open_document
from lib.documents.library import DocumentLibrary
from lib.store.backend import Backend
from lib.ui import conversation_list
from lib.ui import documents_chat as answers
from tests import doc_samples as samples
from tests.fake_openai import FakeOpenAI

PAGE = "app_pages/documents.py"
INTRO = ("intro.pdf", samples.pdf_of_pages([14, 16, 17, 30, 31, 36]), "application/pdf")
NOTES = ("notes.md", b"# Herons\n\nThe heron nests by the river in spring.\n" * 30, "text/markdown")
# INTRO and NOTES together are some 4,300 tokens: more than rag.SMALL_WHOLE_TOKENS, so
# they are searched for passages unless Whole documents is chosen; SHORT and NOTES are less.
SHORT = ("short.pdf", samples.pdf_of_pages([14, 16, 17]), "application/pdf")


@pytest.fixture
def page(app: Callable[..., AppTest], backend: Backend) -> AppTest:
    # The fake stands in for OpenAI here: its models' windows come from Parley's table
    # (gpt-5-mini's 400,000 tokens), so small documents fit whole.
    at = app(PAGE, PARLEY_PROVIDER="openai")
    at.run()
    assert not at.exception
    return at


def expected_report(name: str, data: bytes) -> str:
    """The report line, from the library's own reading of the file."""
    pages = list(open_document(name, data).pages())
    chars = sum(len(p.text) for p in pages)
    chunks = len(split_pages(pages))
    unit = "page" if len(pages) == 1 else "pages"
    return f"{name}: {len(pages)} {unit}, {chars:,} characters, {chunks} chunks."


def upload(at: AppTest, *files: tuple[str, bytes, str]) -> AppTest:
    uploader = at.file_uploader[0]
    for name, data, mime in files:
        uploader.upload(name, data, mime)
    at.run()
    at.button(key="parley.w.index").click().run()
    assert not at.exception, at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def texts(elements) -> list[str]:  # noqa: ANN001 - an AppTest element list
    return [e.value for e in elements]


def captions(at: AppTest) -> str:
    return "\n".join(texts(at.caption))


def test_upload_index_and_report_each_file(app: Callable[..., AppTest], backend: Backend) -> None:
    page = app(PAGE, PARLEY_PROVIDER="openai", PARLEY_OCR="false")  # the scan stays unread
    page.run()
    assert "Your library is empty" in captions(page)
    upload(page, INTRO, NOTES, ("scan.pdf", samples.image_only_pdf(), "application/pdf"))
    assert texts(page.success) == [expected_report(*INTRO[:2]), expected_report(*NOTES[:2])]
    (error,) = texts(page.error)
    assert error.startswith("scan.pdf has 2 pages but no text that can be extracted")
    assert "OCR is turned off on this server (PARLEY\\_OCR)" in error
    library = captions(page)
    assert "6 pages · 12 chunks · " in library and "1 page · 2 chunks · " in library
    # Both new documents are chosen for the next conversation, the scan is nowhere.
    (picker,) = page.multiselect
    assert len(picker.value) == 2 and picker.options == ["notes.md", "intro.pdf"]
    assert page.file_uploader[0].value == []  # cleared for the next upload


def test_uploading_a_known_file_again_adds_nothing(page: AppTest) -> None:
    upload(page, INTRO)
    upload(page, ("copy.pdf", INTRO[1], INTRO[2]))
    (info,) = texts(page.success)
    assert info.startswith("copy.pdf is already in your library as intro.pdf; nothing was added.")
    assert page.expander[0].label == "Library · 1 document"


def test_the_per_file_limit_is_enforced_in_lib_too(page: AppTest) -> None:
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    try:
        upload(page, ("big.md", b"lorem ipsum " * 100_000, "text/markdown"), NOTES)
    finally:
        config.set_option("server.maxUploadSize", before)
    assert texts(page.error) == ["big.md is 1.1 MB; the limit is 1.0 MB per file."]
    assert [s.split(":")[0] for s in texts(page.success)] == ["notes.md"]


ANSWER_ICONS = (":material/description:", ":material/manage_search:")


def answer_captions(at: AppTest) -> list[str]:
    """The per-answer captions saying which context, why and what it cost."""
    return [c for c in texts(at.caption) if c.startswith(ANSWER_ICONS)]


def send_mode(at: AppTest):  # noqa: ANN201 - an AppTest Radio
    (radio,) = [r for r in at.radio if r.label == "Send to the model"]
    return radio


def test_ask_and_see_cited_sources(page: AppTest, openai_server: FakeOpenAI) -> None:
    upload(page, INTRO, NOTES)  # too big to go whole unasked: passages
    assert send_mode(page).value == "auto"  # "Passages, or whole when small"
    openai_server.script("Use eigen() [1]; solve() handles linear systems [2].")
    ask(page, "How do I compute the eigenvalues of a symmetric matrix?")
    sources = [e.label for e in page.expander if e.label.startswith("[")]
    assert len(sources) == 2 and sources[0].startswith("[1] intro.pdf, page 5 · score ")
    second = sources[1].split(", page ")[1].split(" ")[0]  # the backends rank it differently
    answer = [m for m in texts(page.markdown) if m.startswith("Use eigen()")]
    assert answer == [
        "Use eigen() \\[1 · intro.pdf p. 5\\]; solve() handles linear systems "
        f"\\[2 · intro.pdf p. {second}\\]."
    ]
    passages = texts(page.text)
    assert any("eigen(Sm)" in p for p in passages)
    gauge = captions(page)
    assert "Searched for: How do I compute the eigenvalues of a symmetric matrix?" in gauge
    assert "Also retrieved, not cited:" in gauge
    progress = [p.proto.text for p in page.get("progress")]
    assert any(t.startswith("Retrieval: 6 passages (hybrid search)") for t in progress)
    (line,) = answer_captions(page)
    assert line.startswith(
        ":material/manage_search: Retrieval: 6 passages (hybrid search) · why: the documents are 4,"
    )
    assert ", more than the 4,000 sent whole unasked · cost \\$0.0" in line
    assert line.endswith(" tokens of sources")
    # It is a document conversation: in this page's list, with its id in the URL.
    conv_id = page.query_params["c"]
    conv_id = conv_id[0] if isinstance(conv_id, list) else conv_id
    assert [b.label for b in page.sidebar.button if b.key == f"conv_{conv_id}"] == [
        "How do I compute the eigenvalues of a symmetric matrix?"
    ]


def test_small_documents_are_sent_whole_and_the_caption_says_why(
    page: AppTest, openai_server: FakeOpenAI
) -> None:
    upload(page, SHORT, NOTES)
    openai_server.script("A summary [3] [4].")
    ask(page, "Summarise these documents.")
    progress = [p.proto.text for p in page.get("progress")]
    assert any(t.startswith("Whole documents: 4 pages sent in full") for t in progress)
    assert [e.label.split(" · ")[0] for e in page.expander if e.label.startswith("[")] == [
        "[3] short.pdf, page 3",
        "[4] notes.md",
    ]
    (line,) = answer_captions(page)
    assert line.startswith(
        ":material/description: Whole documents: 4 pages sent in full · why: the documents "
        "are small ("
    )
    assert " tokens, at most 4,000) · cost \\$0.0" in line


def test_whole_documents_when_asked_and_the_setting_is_kept(
    page: AppTest, openai_server: FakeOpenAI, backend: Backend
) -> None:
    upload(page, INTRO, NOTES)
    send_mode(page).set_value("whole").run()
    openai_server.script("Vectors [2], herons [7].")
    ask(page, "Summarise these documents.")
    progress = [p.proto.text for p in page.get("progress")]
    assert any(t.startswith("Whole documents: 7 pages sent in full") for t in progress)
    (line,) = answer_captions(page)
    assert (
        "· why: Whole documents was chosen (4," in line and " tokens of documents) · cost " in line
    )
    system = openai_server.requests_to("/chat/completions")[-1].json["messages"][0]["content"]
    assert "\n[5] intro.pdf, page 5\n" in system and "\n[7] notes.md\n" in system  # page markers
    # The conversation keeps the choice, and a mode stored by the old toggle reads as
    # its new name: off ("retrieval") is Passages only.
    conv_id = page.query_params["c"]
    conv_id = conv_id[0] if isinstance(conv_id, list) else conv_id
    library = DocumentLibrary(backend, "local")
    assert library.chat_settings(conv_id) == ("whole", 6)
    page.run()
    assert send_mode(page).value == "whole"
    library.set_chat_settings(conv_id, "retrieval", 6)
    page.run()
    assert send_mode(page).value == "retrieval"
    assert send_mode(page).options == [
        "Passages, or whole when small",
        "Passages only",
        "Whole documents",
    ]
    page.slider[0].set_value(4).run()
    assert library.chat_settings(conv_id) == ("retrieval", 4)


def test_a_follow_up_shows_the_rewritten_question(page: AppTest, openai_server: FakeOpenAI) -> None:
    upload(page, INTRO)
    openai_server.script("eigen() [1] and solve() [2].")
    ask(page, "Name two matrix functions.")
    openai_server.script("What does solve() do with a matrix?")
    openai_server.script("It solves linear equations [1].")
    ask(page, "and the second one?")
    assert "Searched for: What does solve() do with a matrix?" in captions(page)
    assert [m for m in texts(page.markdown) if m.startswith("It solves")]


def test_show_the_page_of_a_source(page: AppTest, openai_server: FakeOpenAI) -> None:
    upload(page, INTRO)
    openai_server.script("See [1].")
    ask(page, "How do I compute eigenvalues?")
    toggle = next(t for t in page.toggle if t.key.startswith("parley.w.page."))
    toggle.set_value(True).run()
    assert not page.exception
    (image,) = page.get("image")
    assert image.captions[0].startswith("intro.pdf, page")


def test_without_an_embeddings_endpoint_search_is_keyword_only_and_says_so(
    page: AppTest, openai_server: FakeOpenAI
) -> None:
    openai_server.embeddings_enabled = False
    upload(page, INTRO, NOTES)
    assert "searchable by keywords only" in captions(page)
    assert "keyword search only" in captions(page)
    openai_server.script("See [1].")
    ask(page, "eigenvalues of a symmetric matrix")
    progress = [p.proto.text for p in page.get("progress")]
    assert any("(keyword search only)" in t for t in progress)
    assert (
        "Keyword search only for intro.pdf, notes.md: no text-embedding-3-small vectors"
        in captions(page)
    )


def test_delete_and_reindex_from_the_library(page: AppTest, openai_server: FakeOpenAI) -> None:
    upload(page, INTRO, NOTES)
    openai_server.reset()
    reindex = next(b for b in page.button if b.label == "Re-index")
    reindex.click().run()
    assert not page.exception
    (report,) = texts(page.success)
    assert report.startswith("notes.md: 1 page")
    assert "2 chunks' vectors reused from the cache" in captions(page)
    assert openai_server.requests_to("/embeddings") == []
    delete = next(b for b in page.button if b.key and b.key.startswith("parley.w.deldoc."))
    delete.click().run()
    assert page.expander[0].label == "Library · 1 document"
    assert page.multiselect[0].options == ["intro.pdf"]


def test_without_a_key_the_library_is_still_shown(
    app: Callable[..., AppTest], data_dir, openai_server: FakeOpenAI
) -> None:
    at = app(PAGE, key=None, PARLEY_PROVIDER="openai", OPENAI_BASE_URL="")
    at.run()
    assert not at.exception
    assert any("Add an API key" in i for i in texts(at.info))
    assert at.file_uploader.len == 0 and at.chat_input.len == 0


def test_a_chat_conversation_never_opens_here(page: AppTest, store: ConversationStore) -> None:
    chat = store.create(model="gpt-5-mini", title="A plain chat")
    page.query_params["c"] = chat.id
    page.session_state["parley.conversation_id.documents"] = chat.id
    page.run()
    assert any("not found" in w for w in texts(page.warning))
    assert page.title[0].value == "Documents"


def test_the_open_conversation_is_renamed_and_deleted_by_its_menu(
    page: AppTest, store: ConversationStore
) -> None:
    conv = store.create(model="gpt-5-mini", title="Herons", kind=rag.KIND)
    store.add_message(conv.id, Message(role="user", content="Where do herons nest?"))
    page.query_params["c"] = conv.id
    page.run()
    assert page.title[0].value == "Herons"
    # One place for the open conversation's actions: its menu in the list, no second copy.
    assert not [w for w in page.sidebar.text_input if w.label == "Title"]
    assert not [e for e in page.sidebar.expander if e.label == "This conversation"]
    page.sidebar.menu_button(key=f"menu_{conv.id}").click(conversation_list.RENAME).run()
    next(t for t in page.text_input if t.label == "Title").input("Nests")
    next(b for b in page.button if b.label == "Save").click().run()
    assert store.get(conv.id).title == "Nests" and page.title[0].value == "Nests"
    page.sidebar.menu_button(key=f"menu_{conv.id}").click(conversation_list.DELETE).run()
    next(b for b in page.button if b.label == "Delete for good").click().run()
    assert not page.exception, page.exception
    assert store.list(kind=rag.KIND) == []
    assert page.title[0].value == "Documents"


def test_the_top_row_picks_the_model_and_starts_a_new_document_chat(
    page: AppTest, store: ConversationStore
) -> None:
    conv = store.create(model="gpt-5-mini", title="Herons", kind=rag.KIND)
    page.query_params["c"] = conv.id
    page.run()
    # The Chat page's row (lib.ui.chat_header.top_bar), with this page's model picker.
    (model,) = [s for s in page.main.selectbox if s.key == f"parley.w.docmodel.{conv.id}"]
    assert model.value == "gpt-5-mini"
    assert not [s for s in page.sidebar.selectbox if s.label == "Model"]  # one picker only
    new = page.button(key="parley.w.top.new")
    assert new.help == "New document chat"
    new.click().run()
    assert not page.exception, page.exception
    assert page.title[0].value == "Documents" and "c" not in page.query_params
    assert [s.key for s in page.main.selectbox] == ["parley.w.docmodel.draft"]
    assert store.get(conv.id).title == "Herons"  # a new chat, nothing deleted


@pytest.fixture(autouse=True)
def _no_leftover_config() -> Iterator[None]:
    before = config.get_option("server.maxUploadSize")
    yield
    config.set_option("server.maxUploadSize", before)


def test_files_left_by_a_cancelled_run_are_reported_as_cancelled(page: AppTest) -> None:
    upload(page, NOTES)
    # What a run interrupted by Cancel leaves: the reports so far, and the files not done.
    page.session_state["parley.doc_pending"] = ["intro.pdf", "more.pdf"]
    page.run()
    assert texts(page.warning) == [
        "intro.pdf: Cancelled before it was indexed.",
        "more.pdf: Cancelled before it was indexed.",
    ]
    assert texts(page.success)[0].startswith("notes.md: 1 page")
    page.button(key="parley.w.dismiss_reports").click().run()
    assert page.warning.len == 0 and page.success.len == 0


def test_file_names_are_shown_as_typed_not_as_markdown(page: AppTest) -> None:
    upload(page, ("my_notes *draft* <b>x</b>.md", NOTES[1], NOTES[2]))
    assert "**my\\_notes \\*draft\\* \\<b\\>x\\</b\\>.md**" in texts(page.markdown)


def test_a_server_without_embeddings_says_so_up_front_and_searches_by_keyword(
    app: Callable[..., AppTest], openai_server: FakeOpenAI
) -> None:
    openai_server.flavour("llama-server", embeddings=False)  # 501 at /v1/embeddings
    at = app(PAGE)
    at.run()
    assert not at.exception, at.exception
    assert "no embeddings, so documents are searched by keyword only" in captions(at)
    upload(at, NOTES)
    openai_server.script("Herons nest by the river [1].")
    ask(at, "Where do herons nest?")
    assert not openai_server.requests_to("/embeddings")[1:]  # only the capability probe
    assert "keyword search only" in captions(at)


@pytest.mark.parametrize(
    ("role", "meta", "cost", "expected"),
    [
        # An answer saved before answers said why: its mode and cost still show.
        ("assistant", {"rag": {"mode": "whole", "sources": 3}}, None,
         "Whole documents: 3 pages sent in full · cost unknown"),
        ("assistant", {"rag": {"mode": "retrieval", "search": "keyword", "sources": 2,
                               "reason": "this conversation always sends passages"},
                       "context": {"sources": 812}}, 0.0014,
         "Retrieval: 2 passages (keyword search only) · why: this conversation always sends "
         "passages · cost $0.0014, 812 tokens of sources"),
        ("assistant", {}, 0.001, None),  # a chat reply, not a document answer
        ("user", {"rag": {"mode": "whole", "sources": 3}}, None, None),
    ],
)  # fmt: skip
def test_the_line_under_an_answer(role: str, meta: dict, cost: float | None, expected) -> None:  # noqa: ANN001
    message = Message(role=role, content="An answer [1].", meta=meta, cost=cost)
    assert answers.mode_line(message) == expected


def conversation(at: AppTest) -> str:
    conv_id = at.query_params["c"]
    return conv_id[0] if isinstance(conv_id, list) else conv_id


def system_sent(server: FakeOpenAI) -> str:
    return server.requests_to("/chat/completions")[-1].json["messages"][0]["content"]


def test_regenerate_an_answer_searches_again_and_keeps_the_first_as_a_version(
    page: AppTest, openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    upload(page, INTRO, NOTES)
    openai_server.script("Use eigen() [1].")
    ask(page, "How do I compute the eigenvalues of a symmetric matrix?")
    cid = conversation(page)
    question, first = store.path(cid)
    # The Chat page's row: copy, regenerate and the time, under the answer.
    copies = {e.key for e in page.get("bidi_component")}  # lib.ui.message_actions' Copy
    assert {f"parley-copy-{question.id}", f"parley-copy-{first.id}"} <= copies
    assert page.button(key=f"parley.w.edit.open.{question.id}")
    openai_server.reset()
    openai_server.script("eigen(Sm) gives them [2].")
    page.button(key=f"parley.w.regen.{first.id}").click().run()
    assert not page.exception, page.exception
    _, second = store.path(cid)
    assert second.id != first.id and second.parent_id == question.id
    assert second.meta["rag"]["mode"] == "retrieval" and second.meta["citations"]
    assert "[1] intro.pdf, page 5" in system_sent(openai_server)  # searched afresh
    answer = [m for m in texts(page.markdown) if m.startswith("eigen(Sm) gives them")]
    assert answer and "\\[2 · intro.pdf p." in answer[0]
    assert "2/2" in captions(page)
    page.button(key=f"parley.w.version.{second.id}.-1").click().run()
    assert [m.content for m in store.path(cid)] == [question.content, "Use eigen() [1]."]
    assert "1/2" in captions(page)


def test_edit_a_question_asks_the_documents_again(
    page: AppTest, openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    upload(page, INTRO, NOTES)
    openai_server.script("See [1].")
    ask(page, "What is NA?")
    openai_server.script("Herons nest by the river [3].")
    ask(page, "and the heron?")  # rewritten first, then answered
    cid = conversation(page)
    first_question = store.path(cid)[0]
    page.button(key=f"parley.w.edit.open.{first_question.id}").click().run()
    page.text_area(key=f"parley.w.edit.{first_question.id}").set_value("Where do herons nest?")
    openai_server.reset()
    openai_server.script("By the river [2].")
    page.button(key=f"parley.w.edit.send.{first_question.id}").click().run()
    assert not page.exception, page.exception
    edited, answer = store.path(cid)
    assert edited.content == "Where do herons nest?" and answer.content == "By the river [2]."
    assert "Searched for: Where do herons nest?" in captions(page)  # a first question: as typed
    assert len(openai_server.requests_to("/chat/completions")) == 1  # nothing to rewrite
    assert "heron nests by the river" in system_sent(openai_server)
    assert "2/2" in captions(page)  # the question's versions
    assert page.text_area.len == 0  # the form closed


def test_a_failed_answer_is_retried_in_its_bubble_with_retrieval(
    page: AppTest, openai_server: FakeOpenAI, store: ConversationStore
) -> None:
    upload(page, INTRO)
    openai_server.fail(503, route="chat/completions")
    ask(page, "What is R?")
    cid = conversation(page)
    _, failed = store.path(cid)
    assert failed.status == "failed"
    openai_server.script("R is a language [1].")
    page.chat_message[1].button(key=f"parley.w.retry.{failed.id}").click().run()
    assert not page.exception, page.exception
    assert [m.status for m in store.all_messages(cid)] == ["ok", "ok"]  # the failure dropped
    assert store.path(cid)[1].meta["citations"]
