"""Every public store method that takes a workspace refuses to run without one."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from lib.conversations import ConversationStore
from lib.documents.library import DocumentLibrary
from lib.gallery import ImageStore


def workspace_methods(cls: type) -> list[str]:
    return sorted(
        name
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_") and list(inspect.signature(fn).parameters)[1:2] == ["workspace"]
    )


STORES = {"conversations": ConversationStore, "documents": DocumentLibrary, "images": ImageStore}
CASES = [(kind, name) for kind, cls in STORES.items() for name in workspace_methods(cls)]


def test_the_rule_covers_every_store() -> None:
    covered = {kind for kind, _ in CASES}
    assert covered == set(STORES) and len(CASES) > 40


def build(kind: str, data_dir: Path) -> object:
    if kind == "conversations":
        return ConversationStore(data_dir / "parley.db")
    return STORES[kind](data_dir)


@pytest.mark.parametrize(("kind", "method"), CASES)
def test_no_workspace_no_query(kind: str, method: str, data_dir: Path) -> None:
    store = build(kind, data_dir)
    fn = getattr(store, method)
    params = list(inspect.signature(fn).parameters.values())[1:]
    # Placeholder arguments: the call must fail on the workspace before it looks at them.
    args = [
        None
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    kwargs = {
        p.name: None
        for p in params
        if p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY
    }
    with pytest.raises(ValueError, match="workspace is required"):
        result = fn("", *args, **kwargs)
        if inspect.isgenerator(result) or hasattr(result, "__next__"):
            next(result)
        elif hasattr(result, "__enter__"):
            with result:
                pass
