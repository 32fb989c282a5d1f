"""Documents: chat with your PDFs and text files (coming soon)."""

import streamlit as st

st.title("Documents")
st.info(
    "Coming soon: upload PDFs and text files, index them, and ask questions with answers "
    "that cite the file and page.",
    icon=":material/construction:",
)
