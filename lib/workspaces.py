"""The one rule every store follows: no read or write runs without a workspace."""

from __future__ import annotations


def require_workspace(workspace: str) -> str:
    """Return `workspace`, or refuse a missing one before any query can run."""
    if not workspace or not isinstance(workspace, str):
        raise ValueError("a workspace is required")
    return workspace
