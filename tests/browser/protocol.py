"""A Streamlit session the way a guessing script opens one: Streamlit's own websocket
protocol (`/_stcore/stream`, protobuf messages), no browser.

Each `ScriptSession` is one new websocket, so one new Streamlit session with empty session
state, and it can send any header (X-Forwarded-For, say). It is about five times quicker
per session than a Chromium context, which is what makes it the attacker's tool; tests use
it to show what the gate does against that attacker.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.sync.client import connect

ANSWER_TIMEOUT = 60.0  # seconds for one script run to finish; generous for a loaded machine
RERUN = ForwardMsg.ScriptFinishedStatus.FINISHED_EARLY_FOR_RERUN


class ScriptSession:
    """One Streamlit session over a websocket of its own; use it in a `with` block."""

    def __init__(self, app_url: str, headers: Mapping[str, str] | None = None) -> None:
        self._connection = connect(
            app_url.replace("http", "ws", 1) + "/_stcore/stream",
            subprotocols=["streamlit"],
            additional_headers=dict(headers or {}),
            open_timeout=ANSWER_TIMEOUT,
        )
        self._ws = None

    def __enter__(self) -> ScriptSession:
        self._ws = self._connection.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._connection.__exit__(*exc)

    def run(self, widgets: Iterable[WidgetState] = ()) -> list[Element]:
        """Run the app's script with these widget values; the elements it drew.

        A run that ends in `st.rerun()` is followed to the end of the run it started.
        """
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.widget_states.widgets.extend(widgets)
        self._ws.send(msg.SerializeToString())
        elements: list[Element] = []
        while True:
            forward = ForwardMsg()
            forward.ParseFromString(self._ws.recv(timeout=ANSWER_TIMEOUT))
            kind = forward.WhichOneof("type")
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                elements.append(forward.delta.new_element)
            elif kind == "script_finished" and forward.script_finished != RERUN:
                return elements


def widget(elements: list[Element], kind: str) -> object:
    """The first element of this kind (`text_input`, `button`...)."""
    for element in elements:
        if element.WhichOneof("type") == kind:
            return getattr(element, kind)
    raise AssertionError(f"no {kind} among {[e.WhichOneof('type') for e in elements]}")


def try_password(app_url: str, password: str, headers: Mapping[str, str] | None = None) -> str:
    """Open a fresh session, submit the gate's form once; the error it shows, "" if admitted."""
    with ScriptSession(app_url, headers) as session:
        gate = session.run()
        box, enter = widget(gate, "text_input"), widget(gate, "button")
        typed = WidgetState(id=box.id, string_value=password)
        answer = session.run([typed, WidgetState(id=enter.id, trigger_value=True)])
    errors = [
        e.alert.body
        for e in answer
        if e.WhichOneof("type") == "alert" and e.alert.format == Alert.ERROR
    ]
    return errors[0] if errors else ""
