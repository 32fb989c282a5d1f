"""A naive chat page, the baseline for bench/rerun.py (not part of the app).

It does what streamlit/llm-examples' Chatbot.py does on every rerun: a key field in the
sidebar, a title, then every message of the conversation drawn with `st.chat_message`
and `st.markdown`, then the chat input. The difference from the tutorial is only where
the history comes from: the whole conversation is loaded from Parley's SQLite store
(`?c=<id>`), as a persistent naive app would have to, instead of `st.session_state`.
"""

import streamlit as st

from lib.conversations import ConversationStore
from lib.settings import data_dir
from lib.store.backend import open_backend

with st.sidebar:
    st.text_input("OpenAI API Key", key="chatbot_api_key", type="password")

st.title("Chatbot")
store = ConversationStore(open_backend(data_dir()), "local")
cid = st.query_params.get("c")
messages = store.all_messages(cid) if cid else []
for message in messages:
    with st.chat_message(message.role):
        st.markdown(message.content)

if prompt := st.chat_input():
    st.chat_message("user").markdown(prompt)
