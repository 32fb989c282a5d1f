"""Every store is bound to one workspace when it is opened: it refuses to open without
one, and none of its public methods takes a workspace, so no call can reach another's.

(Before the one store layer every method took the workspace and checked it; now
`lib.store.base.WorkspaceStore` checks it once, and the stores' queries filter on
`self.workspace`, which tests/test_storage.py and the other stores' tests prove.)
"""

from __future__ import annotations

import importlib
import inspect

import pytest

from lib.store.backend import Backend
from lib.store.base import WorkspaceStore

# Where each store lives; a store added elsewhere fails the first test until it is named.
MODULES = {
    "AttachmentStore": "lib.chat.attachments",
    "ConversationStore": "lib.conversations",
    "DocumentLibrary": "lib.documents.library",
    "EmbeddingCache": "lib.documents.embeddings",
    "ImageStore": "lib.gallery",
    "ImportLedger": "lib.history.ledger",
    "Preferences": "lib.preferences",
}


def stores() -> dict[str, type[WorkspaceStore]]:
    for module in MODULES.values():
        importlib.import_module(module)
    found: dict[str, type[WorkspaceStore]] = {}
    pending = list(WorkspaceStore.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__module__.startswith("lib."):
            found[cls.__name__] = cls
        pending.extend(cls.__subclasses__())
    return found


STORES = stores()


def test_the_rule_covers_every_store() -> None:
    assert set(STORES) == set(MODULES)
    assert {name: cls.__module__ for name, cls in STORES.items()} == MODULES


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_method_takes_a_workspace(name: str) -> None:
    methods = public_methods(STORES[name])
    assert methods  # something to check
    takes = [m for m, sig in methods.items() if "workspace" in sig.parameters]
    assert takes == []


@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("missing", ["", None])
def test_no_workspace_no_store(backend: Backend, name: str, missing: str | None) -> None:
    with pytest.raises(ValueError, match="workspace is required"):
        STORES[name](backend, missing)  # type: ignore[arg-type]
