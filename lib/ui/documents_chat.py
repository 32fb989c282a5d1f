"""The Documents page's conversation widgets: streaming a cited answer, the sources panel
under each answer with a caption saying which context it used, why and what it cost, the
context gauge, and answering from the documents the turns that the Chat page's message
actions start (`run_pending`).

Document text and model output are shown as Markdown with HTML disabled (Streamlit's
default) or as plain text; never with `unsafe_allow_html`. Model output goes through
`lib.markup.neutralise` (no image loads by itself); file names, the rewritten question
and notes through `lib.markup.escape` (they read as typed).
"""

from __future__ import annotations

import re

import streamlit as st

from lib.conversations import Message
from lib.documents import rag
from lib.documents.extract import render_pdf_page
from lib.documents.library import DocumentLibrary
from lib.errors import NotFoundError, ParleyError
from lib.markup import escape
from lib.ui import user_stop
from lib.ui.chat_view import end, report, take_pending
from lib.ui.transcript import AVATARS, stream_markdown, window_label
from lib.ui.turn_slot import Slot
from lib.usage import money

PASSAGE_PREVIEW = 1_500  # characters of a whole page shown before "show the page"


def with_locations(message: Message) -> str:
    """The answer with each [n] spelled out as the file and page it names, e.g.
    "[2 · R-intro.pdf p. 31]", so a citation reads on its own, without the panel."""
    text = message.content
    citations = message.meta.get("citations") or []
    if message.role != "assistant" or not citations:
        return text
    where = {c["n"]: escape(_short(c)) for c in citations}

    def expand(match: re.Match[str]) -> str:
        numbers = [int(n) for n in re.split(r"\s*[,;]\s*", match.group(1))]
        if not all(n in where for n in numbers):
            return match.group(0)
        return "".join(f"\\[{n} · {where[n]}\\]" for n in numbers)

    return re.sub(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]", expand, text)


def _short(cite: dict) -> str:
    name = cite.get("file", "?")
    if cite.get("page"):
        return f"{name} p. {cite['page']}"
    return f"{name}, {cite['label']}" if cite.get("label") else name


def sources_panel(lib: DocumentLibrary, message: Message) -> None:
    """Under an answer: a chip per cited source, labelled as its inline citation, that
    opens the passage and its page at once (`chips`); then each cited passage with its
    file, page and score, to read them side by side."""
    if message.role != "assistant" or "citations" not in message.meta:
        return
    citations = message.meta["citations"]
    cited = [c for c in citations if c.get("cited", True)]
    if not cited:
        st.caption(":material/info: This answer cites none of its sources.")
    chips(lib, message, cited)
    for cite in cited:
        score = f" · score {cite['score']:.2f}" if cite.get("score") is not None else ""
        label = f"[{cite['n']}] {escape(rag.source_location(cite))}{score}"
        with st.expander(label, icon=":material/format_quote:"):
            _passage(lib, message, cite)
    others = [c for c in citations if not c.get("cited", True)]
    if others:
        named = "; ".join(f"[{c['n']}] {escape(_short(c))}" for c in others)
        st.caption(f"Also retrieved, not cited: {named}")
    line = mode_line(message)
    if line:
        icon = "description" if message.meta["rag"]["mode"] == "whole" else "manage_search"
        st.caption(f":material/{icon}: {escape(line)}")


def mode_line(message: Message) -> str | None:
    """Which context an answer used, why, and what it cost, e.g. "Retrieval: 6 passages
    (hybrid search) · why: the documents are 75,000 tokens, more than the 4,000 sent whole
    unasked · cost $0.0014, 2,412 tokens of sources"."""
    info = message.meta.get("rag")
    if message.role != "assistant" or not info:
        return None
    parts = [_mode_label(info)]
    if info.get("reason"):
        parts.append(f"why: {info['reason']}")
    sources = (message.meta.get("context") or {}).get("sources")
    tokens = f", {sources:,} tokens of sources" if sources else ""
    cost = money(message.cost)  # "cost unknown" when the model has no price
    parts.append(f"{cost if message.cost is None else f'cost {cost}'}{tokens}")
    return " · ".join(parts)


def _mode_label(info: dict) -> str:
    if info["mode"] == "whole":
        return f"Whole documents: {info['sources']} pages sent in full"
    kind = "hybrid search" if info.get("search") == "hybrid" else "keyword search only"
    return f"Retrieval: {info['sources']} passages ({kind})"


def chips(lib: DocumentLibrary, message: Message, cited: list[dict]) -> None:
    """One small button per cited source, in citation order, labelled as the answer's
    text spells that citation ("[1 · R-intro.pdf p. 31]"), so the reader can tell which
    marker it opens. A click opens `_source_dialog` in that same run; the dialog holds no
    widget, so no rerun from inside it can close it behind the reader's back."""
    if not cited:
        return
    with st.container(horizontal=True, gap="small", key=f"parley.w.cites.{message.id}"):
        for cite in cited:
            label = escape(f"[{cite['n']} · {_short(cite)}]")
            key = f"parley.w.cite.{message.id}.{cite['n']}"
            if st.button(label, key=key, icon=":material/format_quote:", type="tertiary"):
                _source_dialog(lib, message, cite)


def _source_dialog(lib: DocumentLibrary, message: Message, cite: dict) -> None:
    # The title is the passage's locator ("R-intro.pdf, page 31 (printed 25)"), which is
    # a file name: escaped like every label.
    title = escape(f"[{cite['n']}] {rag.source_location(cite)}")

    def body() -> None:
        _passage(lib, message, cite, page=True)

    st.dialog(title, width="large")(body)()


def _passage(lib: DocumentLibrary, message: Message, cite: dict, page: bool = False) -> None:
    """A cited passage as plain text with how it was found; its PDF page follows at once
    when `page`, else behind a "Show the page" toggle (rendering a page takes a while)."""
    text = cite.get("text", "")
    if len(text) > PASSAGE_PREVIEW and cite.get("score") is None:  # a whole page
        text = text[:PASSAGE_PREVIEW] + "…"
    st.text(text)
    details = []
    if cite.get("similarity") is not None:
        details.append(f"cosine similarity {cite['similarity']:.2f}")
    if cite.get("keyword_rank"):
        details.append(f"keyword rank {cite['keyword_rank']}")
    if cite.get("start") is not None:
        details.append(f"characters {cite['start']:,}–{cite['end']:,} of the page")
    if details:
        st.caption(" · ".join(details))
    if not (cite.get("page") and cite.get("document_id")):
        return
    if page or st.toggle("Show the page", key=f"parley.w.page.{message.id}.{cite['n']}"):
        _page_image(lib, cite)


def _page_image(lib: DocumentLibrary, cite: dict) -> None:
    try:
        doc = lib.get(cite["document_id"])
        data = lib.read_file(doc)
        page = render_pdf_page(data, cite["page"])
        st.image(page, caption=escape(rag.source_location(cite)))
    except (NotFoundError, OSError):
        st.caption("That document is no longer in your library.")


def gauge(message: Message | None) -> None:
    """Which context the last answer used, and how much of the window it took."""
    if message is None or "rag" not in message.meta:
        return
    info = message.meta["rag"]
    context = message.meta.get("context") or {}
    mode = _mode_label(info)
    cols = st.columns([3, 2])
    if context:
        sources = context.get("sources", 0)
        used = context["system"] + sources + context["history"] + context["new"]
        fill = min(used / context["window"], 1.0)
        cols[0].progress(fill, text=f"{mode} · {window_label(context, used)}")
        cols[0].caption(
            f"Sources {sources:,} · instructions {context['system']:,} · "
            f"history {context['history']:,} · question {context['new']:,}"
        )
    else:
        cols[0].caption(mode)
    if info.get("question"):
        cols[1].caption(f"Searched for: {escape(info['question'])}")
    for note in info.get("notes") or []:
        cols[1].caption(f":material/info: {escape(note)}")


def stream(answer: rag.Answer, slot: Slot | None = None) -> None:
    """Search, then stream the answer into a bubble; rerun to show it with its sources.
    An error (say, the server down while the question is rewritten) is saved as the
    failed turn and shown in the answer's place, with Retry (`chat_view.report`)."""
    if slot is not None:
        slot.streaming()
    with st.chat_message("assistant", avatar=AVATARS["assistant"]):
        user_stop.forget()
        try:
            with st.status("Searching your documents…") as status:
                try:
                    plan = answer.plan()
                except ParleyError:
                    status.update(label="The search could not run", state="error")
                    raise
                status.update(label=_planned(plan), state="complete")
            stream_markdown(answer)
        except ParleyError as exc:
            report(answer, exc)
        finally:
            end(answer)  # also on Stop: closes the stream and keeps the partial answer
    st.rerun()


def _planned(plan: rag.Plan) -> str:
    if plan.mode == "whole":
        return f"Reading {len(plan.sources)} whole pages"
    kind = "" if plan.search == "hybrid" else " (keyword search only)"
    return f"Found {len(plan.sources)} passages{kind}"


def run_pending(ctx: rag.DocContext, slot: Slot | None = None) -> None:
    """The turn a message action asked for, answered from the documents. The actions are
    the Chat page's own (`lib.ui.message_actions`: edit any question, regenerate any
    answer, Retry by a failed one; `chat_view.last_actions`' Regenerate): their callbacks
    rewind or branch the conversation and leave a `chat.Reply` to start, which here
    becomes a `rag.Answer` for the same question (`rag.answer_for`), so it is searched
    afresh and cited."""
    try:
        reply = take_pending(ctx.chat)
        if reply is None:
            return
        answer = rag.answer_for(ctx, reply)
    except ParleyError as exc:
        st.error(escape(str(exc)))
        return
    with slot.turn if slot else st.container():
        stream(answer, slot)
