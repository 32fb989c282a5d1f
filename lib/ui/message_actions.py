"""Each message's own actions in the Chat transcript: copy as Markdown, edit (any user
message), regenerate (any reply) and its time, beside the versions control ("‹ 2/3 ›",
`transcript.versions_control`).

They show when the pointer is over a bubble or the keyboard is in it, and always, as one
compact row, on a touch screen (`ROW_CSS`: Parley's own constant CSS, never text from a
message, added by a component that holds nothing else). Edit and regenerate make
branches (`lib.chat`): the click's callback saves the edit or rewinds the path to the
question, so the run that follows draws the path up to that question and streams the
answer below it (`chat_view.run_pending`); the earlier version stays one "‹" away.

Copy puts the message's raw text on the clipboard through a small component whose script
is the constant below: the text reaches it as data and goes to `clipboard.writeText`
only, never into the page, so nothing in it can render or run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, tzinfo

import streamlit as st

from lib import chat
from lib import conversation_groups as groups
from lib.conversations import ConversationStore, Message
from lib.errors import ParleyError
from lib.ui import chat_view, state

# The row (`parley-tools-<id>`) fades in over the bubble it belongs to; always there where
# nothing hovers (phones, tablets). Opacity, not display: a hidden button still takes Tab.
ROW_CSS = """
[class*="st-key-parley-tools-"] { opacity: 0; transition: opacity 120ms; }
[data-testid="stChatMessage"]:hover [class*="st-key-parley-tools-"],
[data-testid="stChatMessage"]:focus-within [class*="st-key-parley-tools-"] { opacity: 1; }
@media (hover: none) { [class*="st-key-parley-tools-"] { opacity: 1; } }
[class*="st-key-parley-row-"] button { min-height: 1.8rem; padding: 0 0.4rem; }
@media (max-width: 640px) {
  [data-testid="stApp"] :has(.st-key-parley-top-bar) { background-color: inherit; }
  .stMain:has(.st-key-parley-top-bar) { scroll-padding-top: 6.5rem; }
  [data-testid="stLayoutWrapper"]:has(> .st-key-parley-top-bar) {
    position: sticky; top: 3.75rem; z-index: 100; }
}
"""

_COPY_JS = """
export default function (component) {
  const { parentElement, data } = component;
  const button = parentElement.querySelector("button");
  button.onclick = async () => {
    const text = String((data && data.text) || "");
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // No clipboard API (a page served over plain http to another host): the old way.
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
    button.dataset.copied = "1";
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = "Copy"; delete button.dataset.copied; }, 1500);
  };
}
"""
_COPY_CSS = """
button { font: inherit; font-size: 0.8rem; color: inherit; background: none; cursor: pointer;
  border: 1px solid transparent; border-radius: 0.4rem; padding: 0.15rem 0.45rem; }
button:hover, button:focus-visible { border-color: rgba(128, 128, 128, 0.5); }
"""
_copy = st.components.v2.component(
    "parley_copy_markdown",
    html='<button type="button" title="Copy as Markdown" aria-label="Copy as Markdown">'
    "Copy</button>",
    css=_COPY_CSS,
    js=_COPY_JS,
)
# Not isolated, so the rules reach the page's own elements; CSS only: it has no markup or
# script, and nothing from a message goes into it.
_row_style = st.components.v2.component(
    "parley_message_rows", html="", css=ROW_CSS, isolate_styles=False
)
EDITING = "chat.editing"  # the message whose edit form is open: lasts until sent or cancelled


def editing() -> int | None:
    return state.get(EDITING)


def start_editing(message_id: int) -> None:
    state.put(EDITING, message_id)


def stop_editing() -> None:
    state.pop(EDITING)


Part = Callable[[Message], None]


def for_chat(store: ConversationStore, cid: str) -> tuple[Part, Part]:
    """The Chat transcript's `actions` (Retry by a failed reply's error, the open edit
    form) and `tools` (the row) for `transcript.render_window`; adds the row's CSS."""
    _row_style(key="parley-message-rows", width="content", height="content")
    retry, form = chat_view.retry_in_place(store, cid), edit_form(store, cid)

    def actions(message: Message) -> None:
        retry(message)
        form(message)

    return actions, tools(store, cid)


def tools(store: ConversationStore, cid: str) -> Part:
    """For `transcript.render_window(tools=...)`: a message's copy, edit or regenerate and
    time, drawn in its row; the edit form under the message being edited."""

    def part(message: Message) -> None:
        if message.id is None:
            return
        _copy(key=f"parley-copy-{message.id}", data={"text": message.content}, width="content")
        if message.role == "user":
            st.button(
                "Edit",
                key=f"parley.w.edit.open.{message.id}",
                type="tertiary",
                help="Edit this message and send it again (the earlier version is kept)",
                on_click=start_editing,
                args=(message.id,),
            )
        # A failed or cut-off reply has Retry by its error instead (chat_view.retry_in_place).
        elif message.role == "assistant" and not (
            chat.is_record(message) or chat.needs_retry(message)
        ):
            st.button(
                "Regenerate",
                key=f"parley.w.regen.{message.id}",
                type="tertiary",
                help="Answer this question again (this reply is kept as a version)",
                on_click=chat_view.retry_turn,
                args=(store, cid, message.id),
            )
        st.caption(when(message.created_at, groups.zone(st.context.timezone)))

    return part


def edit_form(store: ConversationStore, cid: str) -> Part:
    """For `transcript.render_window(actions=...)`: the open edit form, in its bubble.

    A form, so the text and the click on Send reach the app in one rerun. As a plain text
    area and button they were two: the browser sends a text area's value when it loses
    focus, and a click on Send straight after typing could arrive first, so the edit was
    answered with the old text (one loaded browser run lost it that way). Ctrl+Enter in
    the box sends too (the form's first button)."""

    def part(message: Message) -> None:
        if message.id is None or editing() != message.id:
            return
        key = f"parley.w.edit.{message.id}"
        with st.form(key=f"parley-edit-{message.id}", border=False):
            st.text_area("Edit your message", message.content, key=key)
            row = st.container(horizontal=True, gap="small")
            with row:
                st.form_submit_button(
                    "Send",
                    key=f"parley.w.edit.send.{message.id}",
                    type="primary",
                    on_click=send_edit,
                    args=(store, cid, message.id, key),
                )
                st.form_submit_button(
                    "Cancel", key=f"parley.w.edit.cancel.{message.id}", on_click=stop_editing
                )

    return part


def send_edit(store: ConversationStore, cid: str, message_id: int, key: str) -> None:
    """Save the edited text as the message's new version, then answer it. Refused (empty,
    or the conversation gone), the form stays open with the text in it."""
    try:
        question = chat.branch_edit(store, cid, message_id, st.session_state.get(key, ""))
    except ParleyError as exc:
        chat_view.flash("error", str(exc))
        return
    stop_editing()
    chat_view.start(chat_view.answer, cid, question.id)


def when(timestamp: float, zone: tzinfo | None, now: datetime | None = None) -> str:
    """ "14:02" today, "2 Dec, 14:02" this year, "2 Dec 2025" before: in the browser's
    time zone when it said which."""
    at = datetime.fromtimestamp(timestamp, zone)
    now = now or datetime.now(zone)
    if at.date() == now.date():
        return at.strftime("%H:%M")
    if at.year == now.year:
        return f"{at.day} {at:%b}, {at:%H:%M}"
    return f"{at.day} {at:%b %Y}"
