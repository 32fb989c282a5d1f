"""The History page's Folders section: each folder with how many conversations it holds,
renamed or deleted here (moving one conversation is its menu's job, in the sidebar).

A folder exists while it holds a conversation, so deleting one takes its conversations
out of it and never deletes a conversation; it asks first, saying how many. Renaming to a
name another folder has is refused unless "merge" is ticked. Names are the user's own
text, or an imported export's: shown as plain text (`lib.markup.escape`), never Markdown;
a select box's options are plain text already.
"""

from __future__ import annotations

import streamlit as st

from lib.conversation import Folder
from lib.conversations import FOLDER_LENGTH, ConversationStore, folder_name
from lib.errors import ParleyError
from lib.markup import escape
from lib.ui import state

KEY = "parley.w.folders."


def organise(store: ConversationStore) -> None:
    st.subheader("Folders")
    folders = store.folders()
    _outcome()
    if not folders:
        st.caption(
            "No folders yet. Move a conversation into one from its menu in the sidebar; a "
            "folder lasts while it holds a conversation."
        )
        return
    for folder in folders:
        st.markdown(f"- {escape(folder.name)} · {_conversations(folder.count)}")
    counts = {f.name: f.count for f in folders}
    names = list(counts)
    shown = _selected()
    generation = _generation()
    chosen = st.selectbox(
        "Folder to change",
        names,
        index=names.index(shown) if shown in names else 0,
        format_func=lambda name: f"{name} ({counts[name]:,})",
        key=f"{KEY}chosen.{generation}",
    )
    if _pending_delete() == chosen:
        _confirm_delete(store, Folder(chosen, counts[chosen]))
        return
    _rename(store, chosen, generation)
    if st.button("Delete folder…", icon=":material/folder_delete:", key=f"{KEY}delete"):
        _ask_delete(chosen)
        st.rerun()


def _rename(store: ConversationStore, chosen: str, generation: int) -> None:
    typed = st.text_input("New name", max_chars=FOLDER_LENGTH, key=f"{KEY}name.{generation}")
    merge = st.checkbox(
        "If another folder already has that name, merge the two into it",
        key=f"{KEY}merge.{generation}",
    )
    if st.button("Rename", icon=":material/edit:", key=f"{KEY}rename"):
        try:
            held = store.rename_folder(chosen, typed, merge=merge)
        except ParleyError as exc:
            st.error(escape(str(exc)), icon=":material/error:")
            return
        new = folder_name(typed)
        _done(f"“{chosen}” is now “{new}”: {_conversations(held)}.", selected=new)


def _confirm_delete(store: ConversationStore, folder: Folder) -> None:
    st.warning(
        escape(
            f"Delete the folder “{folder.name}”? Its {_conversations(folder.count)} stay, "
            "in no folder; no conversation is deleted."
        ),
        icon=":material/warning:",
    )
    left, right = st.columns(2)
    if left.button("Delete the folder", type="primary", key=f"{KEY}delete_confirm"):
        try:
            held = store.delete_folder(folder.name)
        except ParleyError as exc:
            _ask_delete(None)
            st.error(escape(str(exc)), icon=":material/error:")
            return
        _done(f"Folder “{folder.name}” deleted; its {_conversations(held)} are in no folder now.")
    if right.button("Keep it", key=f"{KEY}delete_cancel"):
        _ask_delete(None)
        st.rerun()


def _conversations(n: int) -> str:
    return f"{n:,} conversation{'s' * (n != 1)}"


# Session state: what the section remembers from one run to the next.


def _done(message: str, *, selected: str | None = None) -> None:
    """After a change: say so on the next run, with fresh inputs and `selected` chosen."""
    state.put("folders.outcome", message)
    state.put("folders.selected", selected)
    state.put("folders.generation", _generation() + 1)
    _ask_delete(None)
    st.rerun()


def _outcome() -> None:
    message = state.pop("folders.outcome")
    if message:
        st.success(escape(message), icon=":material/check_circle:")


def _selected() -> str | None:
    return state.get("folders.selected")


def _generation() -> int:
    return state.get("folders.generation") or 0


def _pending_delete() -> str | None:
    """The folder whose deletion waits for the user's yes."""
    return state.get("folders.delete")


def _ask_delete(name: str | None) -> None:
    state.put("folders.delete", name)
