"""Keeps SECURITY.md true: every global cache in the code is listed in its audit, and the
escape hatches it says are unused (raw HTML, pickles, keys in os.environ) stay unused."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [REPO / "Home.py", *(REPO / "app_pages").glob("*.py"), *(REPO / "lib").rglob("*.py")]
)
CACHE_DECORATORS = {"cache_resource", "cache_data", "cache", "lru_cache"}


def _decorator_name(node: ast.expr) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return None


def cached_functions() -> list[tuple[str, str]]:
    """(path relative to the repo, function name) of every cache-decorated function."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                _decorator_name(d) in CACHE_DECORATORS for d in node.decorator_list
            ):
                found.append((str(path.relative_to(REPO)), node.name))
    return found


def audit_table() -> str:
    text = (REPO / "SECURITY.md").read_text()
    return text[text.index("## Cache audit") :]


def test_the_audit_finds_the_caches_it_is_meant_to_find() -> None:
    assert ("lib/ui/clients.py", "_shared_client") in cached_functions()


@pytest.mark.parametrize(("path", "function"), cached_functions())
def test_every_global_cache_is_in_the_security_audit(path: str, function: str) -> None:
    rows = [line for line in audit_table().splitlines() if f"`{path}`" in line]
    assert any(f"`{function}`" in row for row in rows), (
        f"{path}:{function} is a global cache shared by every session; audit it and add it "
        "to the table in SECURITY.md"
    )


FORBIDDEN = {
    "raw HTML": re.compile(r"unsafe_allow_html\s*=\s*True|\bst\.html\(|components\.v1|\.html\("),
    "pickle": re.compile(r"\bimport pickle\b|\bpickle\.loads?\(|allow_pickle\s*=\s*True"),
    "os.environ writes": re.compile(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.update|putenv\("),
}


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_no_escape_hatches_in_the_app(what: str) -> None:
    hits = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for path in SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN[what].search(line) and not line.lstrip().startswith("#")
    ]
    assert hits == [], f"{what} found; SECURITY.md says there is none"


@pytest.mark.parametrize("page", sorted((REPO / "app_pages").glob("*.py")), ids=lambda p: p.name)
def test_every_page_starts_with_the_guard(page: Path) -> None:
    """Streamlit can run a page without Home.py (see lib/ui/auth.guard): the guard must
    come before the page draws or reads anything."""
    body = [
        node
        for node in ast.parse(page.read_text()).body
        if not isinstance(node, ast.Import | ast.ImportFrom)
        and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
    ]
    assert body and ast.unparse(body[0]) == "auth.guard()", f"{page.name} must start with it"


SETTING_NAME = re.compile(r"[\"'`]((?:PARLEY|OPENAI)_[A-Z_]+|APP_PASSWORD)[\"'`]")


def test_every_setting_goes_through_the_one_resolver() -> None:
    """A setting named anywhere in the app is one lib/settings.py resolves (and so one the
    test fixtures clear), and only lib/settings.py reads the environment for settings."""
    from lib.settings import KEYS

    named = {
        (str(path.relative_to(REPO)), match)
        for path in SOURCES
        for match in SETTING_NAME.findall(path.read_text())
    }
    assert {name for _, name in named} - set(KEYS.values()) == set()
    readers = {
        str(path.relative_to(REPO))
        for path in SOURCES
        if re.search(r"os\.environ\.get\(|os\.getenv\(|envvar=", path.read_text())
    }
    assert readers <= {"lib/settings.py"}, readers
