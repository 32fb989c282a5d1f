"""The conversation list: New, a folder filter (once a folder exists), search (within the
folder chosen), then the conversations in sections by date (pinned first), one line each,
with a menu per item (rename, pin, move to a folder, export, delete) and Show more.

Drawn in the sidebar, and on the Chat page also in the "Chats" popover at the top, which a
choice closes. Each place gets its own widget keys (`where`). On a phone the sidebar is a
drawer over the page, and Streamlit 1.67 closes it only on a tap outside it or on its own
page menu (and that only with a phone's user agent): a conversation chosen in it, by a
button or by an `st.page_link` alike (tried at 390 x 844, with and without a phone's user
agent), opened behind a drawer still covering it. So the sidebar's list comes with
`_drawer`, a component of Parley's own whose script is the constant `_DRAWER_JS`: a tap on
a choice (a conversation, a search hit, New) closes the drawer as its own close button
would, where the sidebar is a drawer (narrower than Streamlit's 768 px breakpoint); at
desktop widths, and on the item menus, search and Show more, it does nothing.

A title is one line: a longer one ends in an ellipsis (a button that cannot wrap), and
its tooltip holds the whole title. Titles are typed or model-made text, so they are
escaped before they reach a label, which renders Markdown.
"""

from __future__ import annotations

import logging
from datetime import datetime

import streamlit as st

from lib import chat, export
from lib import conversation_groups as groups
from lib.chat.attachments import AttachmentStore
from lib.conversation import Conversation, SearchHit
from lib.conversations import FOLDER_LENGTH, ConversationStore
from lib.errors import ParleyError
from lib.markup import escape, escape_keeping
from lib.ui import state

log = logging.getLogger(__name__)

PAGE = 50  # conversations listed at first, and added by each Show more
DIALOG = "list.dialog"  # (action, conversation id) of the open rename/export/delete dialog
RENAME, PIN, UNPIN, EXPORT, DELETE = "rename", "pin", "unpin", "export", "delete"
MOVE = "move"
ACTION_LABELS = {
    RENAME: ":material/edit: Rename",
    PIN: ":material/keep: Pin",
    UNPIN: ":material/keep_off: Unpin",
    MOVE: ":material/drive_file_move: Move to folder",
    EXPORT: ":material/download: Export",
    DELETE: ":material/delete: Delete",
}
ALL_FOLDERS = "All conversations"  # the folder filter's first choice
NO_FOLDER, NO_FOLDER_LABEL = "", "— No folder —"  # the Move dialog's way out of any


# The choices in the sidebar's list, by the start of their widget keys ("conv_<id>",
# "hit_<id>", "new_<kind>"), which Streamlit turns into "st-key-…" classes.
CHOICES = ("conv_", "hit_", "new_")
_DRAWER_JS = """
export default function (component) {
  const prefixes = (component.data && component.data.choices) || [];
  const choice = prefixes.map((p) => `[class*="st-key-${p}"] button`).join(", ");
  // Streamlit's drawer width: its md breakpoint (768px), as its own sidebar measures it.
  const drawer = window.matchMedia("(max-width: 767.98px)");
  const close = (event) => {
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    const target = event.target instanceof Element ? event.target : null;
    if (!choice || !sidebar || !target || !drawer.matches) return;
    if (sidebar.dataset.collapsed !== "false" || !sidebar.contains(target.closest(choice))) return;
    const button = sidebar.querySelector('[data-testid="stSidebarCollapseButton"] button');
    if (button) button.click();
  };
  document.addEventListener("click", close);
  return () => document.removeEventListener("click", close);
}
"""
# No markup and no CSS; nothing from a conversation goes into it (see SECURITY.md).
_drawer = st.components.v2.component("parley_close_drawer", js=_DRAWER_JS)


def close_drawer_on_choice() -> None:
    """In the sidebar, after the list: on a phone, choosing in it closes the drawer."""
    _drawer(key="parley-drawer", data={"choices": list(CHOICES)}, width="content", height="content")


def listed(kind: str) -> int:
    """How many of this kind's conversations the list shows (Show more adds PAGE)."""
    return state.get(f"listed.{kind}") or PAGE


def show_more(kind: str) -> None:
    state.put(f"listed.{kind}", listed(kind) + PAGE)


def choose(cid: str | None, kind: str, popover_key: str | None = None) -> None:
    """Open a conversation (None: a new one), closing the popover it was chosen in."""
    state.open_conversation(cid, kind)
    if popover_key:
        st.session_state[popover_key] = False


def now() -> datetime:
    """The browser's time, so "Today" is the user's today."""
    return datetime.now(groups.zone(st.context.timezone))


def show(
    store: ConversationStore,
    kind: str = "chat",
    label: str = "chat",
    *,
    where: str = "sidebar",
    popover_key: str | None = None,
    menus: bool = True,
) -> None:
    """The whole list, into the current container (`where` names it, for the keys);
    `menus` adds each item's menu, whose dialogs `dialogs()` opens later in the run."""
    k = "" if where == "sidebar" else f"{where}_"  # the sidebar's keys predate other places
    st.button(
        f"New {label}",
        icon=":material/add:",
        width="stretch",
        key=f"{k}new_{kind}",
        on_click=choose,
        args=(None, kind, popover_key),
    )
    query = st.text_input(
        "Search conversations",
        key=f"parley.w.{k}search.{kind}",
        placeholder="Search messages…",
        label_visibility="collapsed",
        icon=":material/search:",
    )
    folder = _folder_filter(store, kind, k)
    if query.strip():
        _search_hits(store, query, kind, folder, k, popover_key)
        return
    limit = listed(kind)
    # One more than shown: is there more?
    conversations = store.list(kind=kind, folder=folder, limit=limit + 1)
    current = state.conversation_id(kind)
    for section in groups.group(conversations[:limit], now()):
        st.caption(section.title)
        for conv in section.conversations:
            _item(store, conv, conv.id == current, kind, k, popover_key, menus)
    if len(conversations) > limit:
        st.button(
            "Show more",
            key=f"{k}more_{kind}",
            type="tertiary",
            icon=":material/expand_more:",
            on_click=show_more,
            args=(kind,),
        )


def _folder_filter(store: ConversationStore, kind: str, k: str) -> str | None:
    """The folder whose conversations the list shows (None: all), chosen above it once a
    folder exists. One emptied since (its last conversation moved out in another tab)
    falls back to all. A selectbox shows its options as plain text, never Markdown, so
    the names go in as typed."""
    counts = {f.name: f.count for f in store.folders(kind=kind)}
    key = f"parley.w.{k}folder.{kind}"
    if st.session_state.get(key) not in counts:
        st.session_state[key] = None
    if not counts:
        return None
    return st.selectbox(
        "Show folder",
        [None, *counts],
        key=key,
        format_func=lambda name: ALL_FOLDERS if name is None else f"{name} ({counts[name]})",
        label_visibility="collapsed",
    )


def _search_hits(
    store: ConversationStore,
    query: str,
    kind: str,
    folder: str | None,
    k: str,
    popover_key: str | None,
) -> None:
    # Only this page's kind: a document conversation never opens as a chat.
    hits = store.search(query, kind=kind, folder=folder)
    if not hits:
        st.caption("No matches.")
    for hit in hits:
        st.button(
            escape(hit.title),
            key=f"{k}hit_{hit.conversation_id}",
            width="stretch",
            help=escape_keeping(hit.snippet or "", "**") or None,  # ** marks the match
            type="tertiary",
            wrap=False,
            on_click=_open_hit,
            args=(store, hit, kind, popover_key),
        )


def _open_hit(store: ConversationStore, hit: SearchHit, kind: str, popover_key: str | None) -> None:
    """Open a search hit's conversation on the branch holding the message found."""
    if hit.message_id is not None:
        try:
            chat.reveal(store, hit.conversation_id, hit.message_id)
        except ParleyError as exc:  # deleted meanwhile: the conversation opens as it is
            log.info("search hit not revealed: %s", exc)
    choose(hit.conversation_id, kind, popover_key)


def _item(
    store: ConversationStore,
    conv: Conversation,
    selected: bool,
    kind: str,
    k: str,
    popover_key: str | None,
    menus: bool,
) -> None:
    # One row that never wraps: wrapping put the menu under a long title.
    row = st.container(horizontal=True, wrap=False, gap="xxsmall", vertical_alignment="center")
    row.button(
        escape(conv.title),
        key=f"{k}conv_{conv.id}",
        width="stretch",
        type="secondary" if selected else "tertiary",
        icon=":material/keep:" if conv.pinned else None,
        help=escape(conv.title),  # the whole title, on hover
        wrap=False,  # one line, an ellipsis where it is cut
        on_click=choose,
        args=(conv.id, kind, popover_key),
    )
    if not menus:
        return
    actions = [RENAME, UNPIN if conv.pinned else PIN, MOVE, EXPORT, DELETE]
    action = row.menu_button(
        "",
        actions,
        key=f"{k}menu_{conv.id}",
        help="Rename, pin, move to a folder, export or delete",
        icon=":material/more_horiz:",
        type="tertiary",
        format_func=ACTION_LABELS.get,
    )
    if action in (PIN, UNPIN):
        _pin(store, conv, action == PIN)
    elif action:
        state.put(DIALOG, (action, conv.id))  # opened by dialogs(), outside the sidebar


def dialogs(store: ConversationStore, kind: str = "chat") -> None:
    """The dialog an item's menu asked for, if any: called after the list, in the main area
    (a dialog cannot open inside the sidebar), and in every run until it is done or
    dismissed, so what was typed into it survives a rerun of the whole page."""
    pending = state.get(DIALOG)
    if not pending:
        return
    action, cid = pending
    try:
        conv = store.get(cid)
    except ParleyError:
        state.pop(DIALOG)  # deleted meanwhile, in another tab say
        return
    if conv.kind == kind:
        {RENAME: _rename, MOVE: _move, EXPORT: _export, DELETE: _delete}[action](store, conv)


def _done() -> None:
    state.pop(DIALOG)
    st.rerun()


def _dismissed() -> None:
    state.pop(DIALOG)


def _pin(store: ConversationStore, conv: Conversation, pinned: bool) -> None:
    try:
        store.set_pinned(conv.id, pinned)
    except ParleyError as exc:
        st.error(escape(str(exc)))
        return
    st.rerun()


@st.dialog("Rename conversation", on_dismiss=_dismissed)
def _rename(store: ConversationStore, conv: Conversation) -> None:
    with st.form(f"parley.w.rename.{conv.id}", border=False):
        title = st.text_input("Title", value=conv.title, max_chars=200)
        saved = st.form_submit_button("Save", type="primary")
    if saved:
        try:
            store.rename(conv.id, title)
        except ParleyError as exc:
            st.error(escape(str(exc)))  # the dialog stays open, the typed title kept
            return
        _done()


@st.dialog("Move to folder", on_dismiss=_dismissed)
def _move(store: ConversationStore, conv: Conversation) -> None:
    st.write(escape(conv.title))
    names = [f.name for f in store.folders(kind=conv.kind)]
    with st.form(f"parley.w.move.{conv.id}", border=False):
        chosen = st.selectbox(
            "Folder",
            [NO_FOLDER, *names],
            index=names.index(conv.folder) + 1 if conv.folder in names else 0,
            format_func=lambda name: name or NO_FOLDER_LABEL,  # plain text, as typed
        )
        typed = st.text_input("Or a new folder", max_chars=FOLDER_LENGTH)
        moved = st.form_submit_button("Move", type="primary")
    if moved:
        try:
            store.set_folder(conv.id, typed.strip() or chosen or None)
        except ParleyError as exc:
            st.error(escape(str(exc)))
            return
        _done()


@st.dialog("Export conversation", on_dismiss=_dismissed)
def _export(store: ConversationStore, conv: Conversation) -> None:
    st.write(escape(conv.title))

    files = AttachmentStore(store.backend, store.workspace)

    # Built only when clicked, so a long history costs nothing until then. Attachments are
    # named in Markdown and carried with their bytes in JSON.
    def as_markdown() -> str:
        shown = store.path(conv.id)  # the path shown; JSON keeps every branch
        return export.to_markdown(conv, shown, files.export_entries(shown, data=False))

    def as_json() -> str:
        messages = store.all_messages(conv.id)
        return export.to_json(conv, messages, files.export_entries(messages, data=True))

    row = st.container(horizontal=True)
    for name, build, extension, mime in (
        ("Markdown", as_markdown, "md", "text/markdown"),
        ("JSON", as_json, "json", "application/json"),
    ):
        row.download_button(
            name,
            build,
            file_name=export.filename(conv, extension),
            mime=mime,
            on_click="ignore",
            icon=":material/download:",
        )


@st.dialog("Delete conversation", on_dismiss=_dismissed)
def _delete(store: ConversationStore, conv: Conversation) -> None:
    st.write(f"Delete **{escape(conv.title)}** and all its messages? This cannot be undone.")
    if st.button("Delete for good", type="primary", icon=":material/delete:"):
        try:
            store.delete(conv.id)
        except ParleyError as exc:
            st.error(escape(str(exc)))
            return
        if state.conversation_id(conv.kind) == conv.id:
            state.open_conversation(None, conv.kind)
        _done()
