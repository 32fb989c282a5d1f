"""History: bring conversations in from ChatGPT, Open WebUI, LibreChat or Parley, organise
their folders, and take everything out as one zip."""

import streamlit as st

from lib.ui import auth, clients, folders_view, history_view, sidebar

auth.guard()
current = sidebar.connection()
store = clients.store(current)

st.title("History")
history_view.importer(store, ocr=current.ocr)
st.divider()
folders_view.organise(store)
st.divider()
history_view.exporter(store)
