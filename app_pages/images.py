"""Images: generate pictures from a prompt, and keep them in a gallery."""

import streamlit as st

from lib.errors import MissingKeyError
from lib.ui import auth, clients, gallery_view, images_view, sidebar

auth.guard()
current = sidebar.connection()
store = gallery_view.image_store(current)

st.title("Images")
try:
    api = clients.client(current)
except MissingKeyError as exc:
    # The gallery needs no key: only generating does.
    st.info(f"**Add an API key to generate images.** {exc.hint}", icon=":material/key:")
else:
    images_view.generator(current, api, store)
images_view.latest(store)
gallery_view.gallery(store)
