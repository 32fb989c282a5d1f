"""Conversations from elsewhere: reading other apps' exports (`apps.py`) out of a zip or a
JSON file (`archive.py`) into one shape (`model.py`), and importing them into a workspace
once (`importer.py`)."""
