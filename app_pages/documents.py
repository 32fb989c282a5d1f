"""Documents: ask questions of your PDFs and text files; answers cite file and page."""

import streamlit as st

from lib.documents import rag
from lib.errors import MissingKeyError, ParleyError
from lib.markup import escape, neutralise
from lib.ui import auth, chat_view, clients, message_actions, sidebar, state, transcript, turn_slot
from lib.ui import documents_chat as answers
from lib.ui import documents_view as docs
from lib.ui.chat_header import top_bar

auth.guard()
current = sidebar.connection()
store = clients.store(current)
library = docs.library(current)
sidebar.conversations(store, kind=rag.KIND, label="document chat")
conv = chat_view.open_conversation(store, rag.KIND)  # renamed, exported, deleted by its menu

# Document chats, the model picker, New: in view on a phone, as on the Chat page.
model_slot = top_bar(store, conv.id if conv else None, rag.KIND, "document chat")
st.title(escape(conv.title) if conv else "Documents")
chat_view.show_flash()
try:
    api = clients.client(current)
except MissingKeyError as exc:
    api = None
    st.info(f"**Add an API key to add and ask documents.** {exc.hint}", icon=":material/key:")

# A server known to have no embeddings gets keyword search only, said up front.
no_embeddings = clients.capabilities(current, api).missing("embeddings") if api else None
if no_embeddings:
    st.caption(f":material/info: {no_embeddings}")
embedder = docs.embedder(current, api, library) if api and not no_embeddings else None
documents = library.list()
label = f"Library · {len(documents)} document{'s' * (len(documents) != 1)}"
with st.expander(label, expanded=not documents or not conv, icon=":material/folder_open:"):
    if api:
        docs.uploader(library, embedder, conv, ocr=current.ocr)
    docs.library_list(library, documents, embedder, ocr=current.ocr)
if api is None:
    st.stop()

docs.picker(library, conv, documents)
models, note = clients.models(current, api)
if note:
    st.sidebar.caption(f":material/info: {escape(note)}")  # model names are typed text
model = docs.model_picker(store, conv, models, model_slot)
chosen = docs.selection(library, conv)
chat_ctx = clients.chat_context(current, api)
chat_ctx.server.prefetch(model)
if embedder:
    docs.repairs(library, embedder.model)
ctx = rag.DocContext(chat_ctx, library, embedder, docs.reranker(current, api))
shown = []
if conv:  # the Chat page's actions: Retry and the edit form in a bubble, the row under it
    actions, tools = message_actions.for_chat(store, conv.id)
    shown = transcript.render_window(
        store,
        conv.id,
        extra=lambda m: answers.sources_panel(library, m),
        display=answers.with_locations,
        actions=actions,
        tools=tools,
    )
slot = turn_slot.Slot(len(shown))  # the next answer streams here, above the controls
if conv:
    with slot.controls():
        answers.gauge(next((m for m in reversed(shown) if m.role == "assistant"), None))
        chat_view.last_actions(chat_ctx, conv, shown)
    answers.run_pending(ctx, slot)  # an edit, a regenerate or a Retry, re-asked
if embedder:
    docs.coverage_note(documents, chosen, embedder.model)
if not chosen:
    st.caption("Choose the documents to search in the sidebar, or add some to the library.")

if prompt := st.chat_input("Ask about your documents", submit_mode="stop", disabled=not chosen):
    if conv is None:
        conv = store.create(model=model, kind=rag.KIND)
        docs.start_conversation(library, conv)
        state.open_conversation(conv.id, rag.KIND)
    with slot.turn:
        with st.chat_message("user", avatar=transcript.AVATARS["user"]):
            st.markdown(neutralise(prompt))
        try:
            answers.stream(rag.ask(ctx, conv.id, prompt), slot)
        except ParleyError as exc:
            st.error(escape(str(exc)))
