"""Parley's entry point: page setup and navigation. Run with `streamlit run Home.py`."""

import streamlit as st

from lib.ui import auth

st.set_page_config(page_title="Parley", page_icon=":material/forum:", layout="wide")

pages = [
    st.Page("app_pages/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("app_pages/documents.py", title="Documents", icon=":material/description:"),
    st.Page("app_pages/images.py", title="Images", icon=":material/image:"),
    st.Page("app_pages/history.py", title="History", icon=":material/history:"),
]
# Until this session passes the password gate or signs in, only the gate page exists.
auth.navigation(pages).run()
