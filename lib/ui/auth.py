"""The gate in front of every page: the password form or sign-in, and signing out.

Home.py builds its navigation with `navigation(pages)`. A session that has not passed the
gate gets a navigation that holds only the gate page, so no page script runs for it, not
even through a page URL or a `?c=` conversation link. The decisions (which mode, is the
password right, how long to wait, which workspace) are in `lib/access.py`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import streamlit as st
from streamlit.errors import StreamlitAuthError, StreamlitPageNotFoundError
from streamlit.runtime.scriptrunner import get_script_run_ctx

from lib import access, settings
from lib.errors import AccessDenied, ConfigError, DatabaseUnavailable, DiskFull, WrongPassword
from lib.markup import escape
from lib.store.backend import Backend
from lib.ui import clients, state

USER_CLAIMS = ("is_logged_in", "iss", "sub", "name", "email")


def mode() -> access.Mode:
    return access.detect_mode(clients.secrets(), os.environ)


def _user() -> dict[str, object]:
    # st.user comes from Streamlit's signed identity cookie, read when the session starts.
    return {claim: st.user.get(claim) for claim in USER_CLAIMS}


def workspace() -> str:
    """This session's workspace; raises AccessDenied until it has passed the gate.

    Derived once per script run: a page asks for it a dozen times, and reading the
    secrets costs Streamlit up to a few hundred microseconds each time when there is no
    secrets file. A new run, a sign-out (which clears the state) or a failure derives it
    afresh, so it is never older than the run that uses it.
    """
    run = _this_run()
    memo = state.get("workspace_memo")
    if run is not None and memo is not None and memo[0] is run:
        return memo[1]
    current = mode()
    user = _user() if current == "signin" else None
    derived = access.workspace_for(current, admitted=bool(state.get("admitted")), user=user)
    if run is not None:
        state.put("workspace_memo", (run, derived))
    return derived


def _this_run() -> object | None:
    # Streamlit gives every script run a fresh `cursors` dict on its run context; holding
    # it in the memo keeps it alive, so `is` cannot mistake a later run's dict for it.
    ctx = get_script_run_ctx()
    return getattr(ctx, "cursors", None) if ctx is not None else None


def navigation(pages: Sequence[st.Page]) -> st.Page:
    """The app's navigation for this session: the real pages, or only the gate."""
    try:
        workspace()
    except AccessDenied:
        # The gate answers at every page's address, so a page or ?c= link opens the gate
        # (not a "page not found") and, once passed, the page that was asked for.
        gates = [
            st.Page(
                _gate_page,
                title="Sign in",
                url_path=page.url_path or None,
                default=not page.url_path,
            )
            for page in pages
        ]
        return st.navigation(gates, position="hidden")
    _account()
    return st.navigation(list(pages))


def guard() -> None:
    """The first line of every page: no page runs for a session that has not passed the gate.

    A no-op while Home.py's navigation is the only way in: it offers no pages before the
    gate. The page scripts live in `app_pages/`, not `pages/`, because a `pages/` directory
    put a freshly started Streamlit in its old directory mode, which ran a page script
    without Home.py; should a page script ever run that way again, this sends the session
    to Home.py, the gate.
    """
    try:
        workspace()
    except AccessDenied:
        try:
            st.switch_page("Home.py")
        except StreamlitPageNotFoundError:
            # Home.py's own navigation is running, yet the session lost its access during
            # this run: start the run again, and the gate will be all there is.
            st.rerun()


def sign_out() -> None:
    """Forget everything this session held (a typed API key too), then leave."""
    signed_in = mode() == "signin"
    st.session_state.clear()
    if signed_in:
        st.logout()  # clears the identity cookie and ends the provider's session
        st.stop()  # st.logout only queues the redirect: draw nothing more
    st.rerun()


def _account() -> None:
    current = mode()
    if current == "local":
        return
    if current == "password":
        who = "Shared workspace"
    else:
        user = _user()
        who = "Signed in as " + escape(str(user.get("name") or user.get("email") or "you"))
    st.sidebar.caption(who)
    if st.sidebar.button("Sign out", icon=":material/logout:", key="parley.w.signout"):
        sign_out()


def _gate_page() -> None:
    st.title("Parley", anchor=False)
    if mode() == "password":
        _password_form()
    else:
        _sign_in()


def _throttle() -> access.PasswordThrottle:
    """The throttle on this deployment's database (if the database cannot be used, the
    page stops saying why, and no try is compared)."""
    backend = clients.backend(clients.settings())
    return _password_throttle(backend.dialect, backend.location, backend)


@st.cache_resource(show_spinner=False)
def _password_throttle(dialect: str, location: str, _backend: Backend) -> access.PasswordThrottle:
    """One per database for the process: its lock queues this process's tries; the counts
    are in the database (`access.DatabaseFailures`), shared by every replica."""
    return access.PasswordThrottle(access.DatabaseFailures(_backend))


def _client_address() -> str:
    # Raises ConfigError for a malformed PARLEY_TRUSTED_PROXIES: no try is compared then.
    return access.client_address(
        st.context.ip_address,
        st.context.headers.get_all("X-Forwarded-For"),
        settings.trusted_proxies(clients.secrets(), os.environ),
    )


def _password_form() -> None:
    st.write("This Parley is private. Enter the password to continue.")
    # clear_on_submit: the typed password does not linger in the field or session state.
    with st.form("parley.gate", clear_on_submit=True):
        given = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Enter", type="primary", icon=":material/lock_open:")
    if not submitted:
        return
    expected = access.configured_password(clients.secrets(), os.environ) or ""
    try:
        _throttle().check(_client_address(), given or "", expected)
    except WrongPassword as exc:
        st.error(escape(str(exc)), icon=":material/lock:")
        return
    except (ConfigError, DatabaseUnavailable, DiskFull) as exc:  # no try was admitted
        st.error(escape(str(exc)))
        return
    state.put("admitted", True)
    st.rerun()


def _sign_in() -> None:
    if _user().get("is_logged_in"):
        # Signed in, yet no workspace: the identity lacks an issuer or subject.
        try:
            workspace()
        except AccessDenied as exc:
            st.error(escape(str(exc)))
        if st.button("Sign out", icon=":material/logout:"):
            sign_out()
        return
    st.write("Sign in to continue. Every account has its own private workspace.")
    providers = access.login_providers(clients.secrets())
    for name in providers or [None]:
        label = f"Sign in with {name.title()}" if name else "Sign in"
        if st.button(label, type="primary", icon=":material/login:", key=f"login_{name}"):
            try:
                st.login(name)
            except StreamlitAuthError as exc:
                st.error(escape(f"Sign-in is not configured correctly: {exc}"))
