"""Where a new turn streams on the Chat and Documents pages (`Slot`): between the
transcript and the controls under the last reply, with the stale bubbles of a rewound
path blanked out. The pages make one per run; `chat_view.stream`, `chat_view.message_box`
and `documents_chat.stream` draw into it."""

from __future__ import annotations

import streamlit as st

from lib.ui import state

DRAWN = "chat.drawn"  # bubbles the transcript drew in the last run: how many may be stale


class Slot:
    """Where a new turn is drawn: under the transcript and above the controls that follow
    the last reply (its action row, the context gauge), which are cleared while a reply
    streams. Drawn in page order instead, the old reply's controls sat between it and the
    new turn while it streamed, then jumped below the new reply on the rerun.

    `drawn` is how many bubbles the transcript drew above it. When that is fewer than the
    last run drew (a Regenerate or an edit rewound the path shown), Streamlit keeps the
    last run's bubbles past the new end on screen, stale, until the run ends: through a
    whole streamed reply. Blank places drawn over them take them away at once."""

    def __init__(self, drawn: int = 0) -> None:
        self.turn = st.container()
        self._controls = st.empty()
        before = state.get(DRAWN) or 0
        state.put(DRAWN, drawn)
        # One more than the difference: "Show earlier messages" may have gone too.
        for _ in range(before - drawn + 1 if before > drawn else 0):
            st.empty()

    def controls(self):  # noqa: ANN201 - a Streamlit container
        return self._controls.container()

    def streaming(self) -> None:
        """A reply starts: the controls of the one before go until the rerun redraws them."""
        self._controls.empty()
