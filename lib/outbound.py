"""The outbound guard: every connection Parley makes to a server a visitor chose, or to a
URL a model server returned, goes through here.

A host is resolved once, every address it resolves to is checked, and the connection goes
to a checked address, so a name that answers "public" to the check and "127.0.0.1" to the
connect (DNS rebinding) gets nowhere. The request keeps the original host name, so the
Host header, TLS SNI and certificate checks are those of the name, not the address.
Refused: loopback, private (RFC 1918), link-local (169.254.169.254 included), shared
(CGNAT 100.64/10), unique-local, multicast, unspecified and reserved addresses, and the
same addresses embedded in IPv6 (IPv4-mapped, 6to4, NAT64), unless the operator lists
the host or network in `PARLEY_OUTBOUND_ALLOW`.

The seam is httpcore2's network backend (the layer under httpx2 that opens sockets):
`GuardedBackend.connect_tcp` checks, then connects to the address. No maintained library
does this for httpx2's sync client (see SECURITY.md), so it is done here in one place.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpcore2
import httpx2

from lib import errors

if TYPE_CHECKING:
    from lib.settings import Settings

log = logging.getLogger(__name__)

FETCH_FAILED = "Parley could not fetch the image the server returned."
FETCH_HINT = "Generate it again; if that keeps failing, the server's image links are unusable."
REFUSED = "Parley does not connect to local or private network addresses on a visitor's behalf."
REFUSED_HINT = (
    "Choose a server on the public internet, or ask the operator to allow this host "
    "(PARLEY_OUTBOUND_ALLOW)."
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Not global, but `is_global` misses them in some Python versions.
_BLOCKED_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "100.64.0.0/10",  # shared address space (CGNAT)
        "192.0.0.0/24",
        "198.18.0.0/15",  # benchmarking
        "64:ff9b:1::/48",  # local-use NAT64
        "fec0::/10",  # deprecated site-local
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


@dataclass(frozen=True)
class Allow:
    """The operator's allow-list: host names (exact, any case) and networks."""

    names: frozenset[str] = frozenset()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allow:
        names, networks = set(), []
        for entry in (e.strip() for e in entries):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError as exc:
                if "/" in entry or ":" in entry:
                    raise errors.ConfigError(
                        f"PARLEY_OUTBOUND_ALLOW: {entry!r} is neither a host name nor a network."
                    ) from exc
                names.add(_normal_host(entry))
        return cls(frozenset(names), tuple(networks))

    def admits(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


def is_public(address: IPAddress) -> bool:
    """True for an address on the public internet (the only kind reached unasked)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:  # the packet goes to (or via) that IPv4 address
            return is_public(embedded)
    special = (
        address.is_private,
        address.is_loopback,
        address.is_link_local,
        address.is_multicast,
        address.is_reserved,
        address.is_unspecified,
        any(address in network for network in _BLOCKED_NETWORKS),
    )
    return address.is_global and not any(special)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, in the resolver's order (tests replace this)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_addresses(host: str, port: int, allow: Allow) -> list[str]:
    """The addresses to connect to; raises OutboundRefused if any of them is not allowed."""
    name = _normal_host(host)
    try:
        addresses = resolve(name, port)
    except (OSError, UnicodeError) as exc:
        raise httpcore2.ConnectError(f"could not resolve {name}") from exc
    if not addresses:
        raise httpcore2.ConnectError(f"{name} resolved to no address")
    if name in allow.names:
        return addresses
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if not (is_public(address) or allow.admits(address)):
            log.warning("outbound guard refused %s:%s (resolves to %s)", name, port, address)
            raise errors.OutboundRefused(REFUSED, hint=REFUSED_HINT)
    return addresses


class GuardedBackend(httpcore2.SyncBackend):
    """Opens TCP connections only to checked addresses; TLS still names the host."""

    def __init__(self, allow: Allow) -> None:
        self.allow = allow

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        failure: Exception | None = None
        for address in checked_addresses(host, port, self.allow):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                failure = exc  # try the next checked address, as create_connection would
        assert failure is not None
        raise failure


class GuardedTransport(httpx2.HTTPTransport):
    """httpx2's transport over a connection pool that connects through the guard.

    Never through an environment proxy: a proxy would reach the target for us, unchecked.
    """

    def __init__(self, allow: Allow, limits: httpx2.Limits | None = None) -> None:
        # Not calling HTTPTransport.__init__: it would build a second pool (and SSL
        # context, ~20 ms) only to replace it. `_pool` is the one attribute it uses.
        limits = limits or httpx2.Limits(max_connections=100, max_keepalive_connections=20)
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx2.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow),
        )


def guarded_http_client(allow: Sequence[str] = (), timeout: float = 60.0) -> httpx2.Client:
    """An httpx2 client for `openai.OpenAI(http_client=...)`: guarded, no redirects."""
    return httpx2.Client(
        transport=GuardedTransport(Allow.parse(allow)),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


class _Unusable(Exception):
    """Why a fetch failed, for the server's log only."""


def fetch(
    url: str,
    *,
    allow: Sequence[str] = (),
    max_bytes: int,
    content_types: Iterable[str],
    timeout: float = 60.0,
) -> bytes:
    """GET `url` through the guard: 200 only, no redirects, a listed content type, at
    most `max_bytes`, within `timeout` overall. Every failure, refused or not, raises
    the same ProviderError, so the message cannot tell a closed port from a 404; the
    reason goes to the server's log (host only: signed URLs carry tokens in the query).
    """
    try:
        return _fetch(url, Allow.parse(allow), max_bytes, frozenset(content_types), timeout)
    except errors.OutboundRefused:
        pass  # already logged with its address
    except (_Unusable, httpx2.HTTPError, httpcore2.ConnectError, OSError, ValueError) as exc:
        log.warning("image fetch from %s failed: %s", _host_of(url), exc or type(exc).__name__)
    raise errors.ProviderError(FETCH_FAILED, hint=FETCH_HINT)


def _fetch(url: str, allow: Allow, max_bytes: int, types: frozenset[str], timeout: float) -> bytes:
    if not url.startswith(("https://", "http://")):
        raise _Unusable(f"not an http(s) URL: {url[:12]!r}")
    deadline = time.monotonic() + timeout
    with (
        httpx2.Client(
            transport=GuardedTransport(allow), timeout=timeout, follow_redirects=False
        ) as http,
        http.stream("GET", url) as response,
    ):
        if response.status_code != 200:
            raise _Unusable(f"status {response.status_code}")
        kind = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind not in types:
            raise _Unusable(f"content type {kind or 'missing'!r}")
        if int(response.headers.get("content-length") or 0) > max_bytes:
            raise _Unusable(f"declares {response.headers['content-length']} bytes")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > max_bytes:
                raise _Unusable(f"more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise _Unusable(f"took longer than {timeout} s")
            chunks.append(chunk)
    return b"".join(chunks)


def image_allow(settings: Settings) -> tuple[str, ...]:
    """The allow-list for image URLs a model server returned: the operator's list, plus
    the configured server's own host when that server is trusted (an operator's local
    image server keeps working; a visitor's server gets no such pass)."""
    allow = tuple(settings.outbound_allow)
    if settings.server_trusted and settings.base_url:
        host = _host_of(settings.base_url)
        if host:
            allow += (host,)
    return allow


def _host_of(url: str) -> str:
    try:
        return httpx2.URL(url).host
    except (httpx2.InvalidURL, TypeError, ValueError):
        return "?"


def _normal_host(host: str) -> str:
    return host.strip().strip("[]").rstrip(".").lower()
