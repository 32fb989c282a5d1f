"""Parley in a terminal: chat, list, show and export on the web app's core and store.

Run `python -m lib.cli --help`. `app` holds the commands, `session` the interactive
chat loop, `output` the terminal rendering. Nothing here imports Streamlit.
"""
