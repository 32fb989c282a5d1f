"""Images: generate pictures from a prompt or a conversation (coming soon)."""

import streamlit as st

st.title("Images")
st.info(
    "Coming soon: generate images from a prompt or from the current conversation, and keep "
    "them in a gallery.",
    icon=":material/construction:",
)
