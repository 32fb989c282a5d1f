"""lib.outbound: the guard on every connection made for a visitor or to a URL a model
server returned (issue 9, part 2).

No internet here, so a "public" host is a made-up name that `outbound.resolve` is patched
to answer, and the connection it gets is recorded (and, where a test needs an answer,
carried to a loopback server standing in for that host). `connects` records every TCP
connection httpcore2 is asked to open, so "refused" means "no socket was opened".
"""

from __future__ import annotations

import dataclasses
import datetime
import http.server
import io
import ipaddress
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
import openai
import pytest
from PIL import Image

from lib import errors, outbound
from lib.client import build_client, provider_errors
from lib.settings import resolve_settings
from tests.fake_openai import FakeOpenAI

PNG_TYPES = ["image/png"]


def tiny_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (2, 2), (9, 8, 7)).save(buffer, format="PNG")
    return buffer.getvalue()


Route = tuple[int, dict[str, str], bytes]


class Web:
    """A loopback HTTP server answering scripted routes and recording what it was asked."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.scheme = "https" if tls else "http"
        self.routes: dict[str, Route] = {}
        self.seen: list[tuple[str, str]] = []  # (path, Host header)
        self.release = threading.Event()  # ends a "/slow" answer early at teardown
        web = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                web.seen.append((self.path, self.headers.get("Host", "")))
                if self.path.startswith("/slow"):
                    web.release.wait(5)
                status, headers, body = web.routes.get(self.path, (404, {}, b"no such file"))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if headers.get("Transfer-Encoding") == "chunked":
                    for start in range(0, len(body), 1000):
                        piece = body[start : start + 1000]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def web() -> Iterator[Web]:
    server = Web()
    server.routes["/a.png"] = (200, {"Content-Type": "image/png"}, tiny_png())
    yield server
    server.close()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every host httpcore2 opens a TCP connection to (after the guard, an address)."""
    opened: list[str] = []
    original = httpcore2.SyncBackend.connect_tcp

    def record(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(host)
        return original(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore2.SyncBackend, "connect_tcp", record)
    return opened


def names(monkeypatch: pytest.MonkeyPatch, table: dict[str, list[str]]) -> list[str]:
    """Make `outbound.resolve` answer from `table` (real resolution otherwise); returns
    the log of names asked."""
    asked: list[str] = []
    real = outbound.resolve

    def fake(host: str, port: int) -> list[str]:
        asked.append(host)
        return table[host] if host in table else real(host, port)

    monkeypatch.setattr(outbound, "resolve", fake)
    return asked


def fetch(url: str, **kwargs: Any) -> bytes:
    kwargs = {"max_bytes": 1_000_000, "content_types": PNG_TYPES, "timeout": 5.0, **kwargs}
    return outbound.fetch(url, **kwargs)


def refused_message(url: str, **kwargs: Any) -> str:
    with pytest.raises(errors.ProviderError) as caught:
        fetch(url, **kwargs)
    return str(caught.value)


GENERIC = f"{outbound.FETCH_FAILED} {outbound.FETCH_HINT}"


# -- which addresses are public -------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.1.2.3",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",  # CGNAT
        "0.0.0.0",
        "224.0.0.1",  # multicast: `is_global` alone says True
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS's IPv6 metadata address
        "ff02::1",
        "fec0::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    ],
)
def test_internal_addresses_are_not_public(address: str) -> None:
    assert not outbound.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_public(address: str) -> None:
    assert outbound.is_public(ipaddress.ip_address(address))


def test_the_allow_list_takes_names_addresses_and_networks() -> None:
    allow = outbound.Allow.parse([" Images.Corp. ", "10.1.2.3", "192.168.0.0/16", "[fd00::1]", ""])
    assert allow.names == frozenset({"images.corp"})
    assert allow.admits(ipaddress.ip_address("192.168.7.7"))
    assert allow.admits(ipaddress.ip_address("10.1.2.3"))
    assert not allow.admits(ipaddress.ip_address("10.1.2.4"))
    assert allow.admits(ipaddress.ip_address("fd00::1"))
    for bad in ("10.0.0.0/33", "not a host/24"):
        with pytest.raises(errors.ConfigError, match="PARLEY_OUTBOUND_ALLOW"):
            outbound.Allow.parse([bad])


# -- image fetches ----------------------------------------------------------------------------


def test_a_loopback_image_url_is_refused_without_connecting(web: Web, connects: list) -> None:
    assert refused_message(web.url("/a.png")) == GENERIC
    assert connects == [] and web.seen == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://2852039166/latest/meta-data/",  # 169.254.169.254 as one number
        "http://0.0.0.0:{port}/a.png",
        "http://localhost:{port}/a.png",
        "http://[::1]:{port}/a.png",
    ],
)
def test_internal_addresses_in_any_spelling_are_refused_without_connecting(
    web: Web, connects: list, url: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert refused_message(url.format(port=web.port)) == GENERIC
    assert connects == [] and web.seen == []
    assert "outbound guard refused" in caplog.text  # by the guard, not a failed lookup


def test_a_name_that_resolves_to_loopback_is_refused(
    web: Web, connects: list, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    names(monkeypatch, {"images.example.com": ["127.0.0.1"]})
    assert refused_message(web.url("/a.png", "images.example.com")) == GENERIC
    assert connects == [] and web.seen == []
    assert "images.example.com" in caplog.text and "resolves to 127.0.0.1" in caplog.text


def test_one_internal_address_among_public_ones_is_enough_to_refuse(
    connects: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    names(monkeypatch, {"cdn.example.com": ["93.184.216.34", "10.0.0.7"]})
    assert refused_message("http://cdn.example.com/a.png") == GENERIC
    assert connects == []


def test_a_redirect_to_loopback_is_not_followed(
    web: Web, connects: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The allowed name stands in for a public host; what it redirects to is not allowed.
    names(monkeypatch, {"cdn.example.com": ["127.0.0.1"]})
    web.routes["/start.png"] = (302, {"Location": web.url("/a.png")}, b"")
    message = refused_message(web.url("/start.png", "cdn.example.com"), allow=["cdn.example.com"])
    assert message == GENERIC
    assert [path for path, _ in web.seen] == ["/start.png"]  # /a.png was never asked for


@pytest.mark.parametrize("allow", [["127.0.0.1"], ["127.0.0.0/8"], ["images.internal"]])
def test_the_allow_list_lets_a_host_through(
    web: Web, connects: list, monkeypatch: pytest.MonkeyPatch, allow: list[str]
) -> None:
    names(monkeypatch, {"images.internal": ["127.0.0.1"]})
    host = "images.internal" if allow == ["images.internal"] else "127.0.0.1"
    assert fetch(web.url("/a.png", host), allow=allow) == tiny_png()
    assert connects == ["127.0.0.1"]
    assert web.seen == [("/a.png", f"{host}:{web.port}")]  # the Host header keeps the name


def test_dns_rebinding_gets_the_checked_address_not_the_second_answer(
    web: Web, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return next(answers)

    monkeypatch.setattr(outbound, "resolve", rebinding)
    # Carry the connection to the checked public address over to the loopback stand-in.
    original, connects = httpcore2.SyncBackend.connect_tcp, []

    def to_stand_in(self: Any, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connects.append(host)
        return original(self, "127.0.0.1", web.port, *args, **kwargs)

    monkeypatch.setattr(httpcore2.SyncBackend, "connect_tcp", to_stand_in)
    assert fetch(f"http://rebind.example:{web.port}/a.png") == tiny_png()
    assert asked == ["rebind.example"]  # resolved once: the check and the connect agree
    assert connects == ["93.184.216.34"]  # never the second answer, 127.0.0.1
    assert web.seen == [("/a.png", f"rebind.example:{web.port}")]


def test_a_rebinding_name_that_answers_loopback_first_is_refused(
    connects: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter([["127.0.0.1"], ["93.184.216.34"]])
    monkeypatch.setattr(outbound, "resolve", lambda host, port: next(answers))
    assert refused_message("http://rebind.example/a.png") == GENERIC
    assert connects == []


def self_signed(name: str, folder: Path) -> Path:
    """A PEM file with a self-signed certificate for `name` and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = folder / "cert.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def test_tls_names_and_verifies_the_host_while_connecting_to_the_checked_address(
    tmp_path: Path,
    connects: list,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pem = self_signed("images.example.test", tmp_path)
    server_side = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_side.load_cert_chain(pem)
    offered: list[str | None] = []
    server_side.sni_callback = lambda sock, name, ctx: offered.append(name)
    trusting = ssl.create_default_context(cafile=pem)  # as if a public CA had signed it
    monkeypatch.setattr(httpx2, "create_ssl_context", lambda: trusting)
    names(monkeypatch, {"images.example.test": ["127.0.0.1"], "other.example.test": ["127.0.0.1"]})
    web = Web(tls=server_side)
    web.routes["/a.png"] = (200, {"Content-Type": "image/png"}, tiny_png())
    try:
        url = web.url("/a.png", "images.example.test")
        assert fetch(url, allow=["images.example.test"]) == tiny_png()
        assert connects == ["127.0.0.1"] and offered == ["images.example.test"]
        # The certificate is checked against the name asked for, not the address.
        wrong = web.url("/a.png", "other.example.test")
        assert refused_message(wrong, allow=["other.example.test"]) == GENERIC
        assert [path for path, _ in web.seen] == ["/a.png"]
        assert "Hostname mismatch" in caplog.text
    finally:
        web.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAILURES: dict[str, Callable[[Web], str]] = {
    "404": lambda web: web.url("/gone.png"),
    "closed port": lambda web: f"http://127.0.0.1:{closed_port()}/a.png",
    "not an image": lambda web: web.url("/page"),
    "no content type": lambda web: web.url("/bare"),
    "redirect": lambda web: web.url("/moved"),
    "too big": lambda web: web.url("/big.png"),
    "too slow": lambda web: web.url("/slow.png"),
    "not http": lambda web: "file:///etc/passwd",
    "unresolvable": lambda web: "http://no-such-host.invalid/a.png",
}


def test_every_failure_reads_the_same_and_the_log_keeps_the_reason(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    web.routes["/page"] = (200, {"Content-Type": "text/html"}, b"<html>admin</html>")
    web.routes["/bare"] = (200, {}, tiny_png())
    web.routes["/moved"] = (301, {"Location": "http://example.com/a.png"}, b"")
    web.routes["/big.png"] = (200, {"Content-Type": "image/png"}, b"x" * 5000)
    web.routes["/slow.png"] = (200, {"Content-Type": "image/png"}, tiny_png())
    caplog.set_level(logging.INFO, logger="lib.outbound")
    messages = {
        name: refused_message(url(web), allow=["127.0.0.1"], max_bytes=4000, timeout=0.5)
        for name, url in FAILURES.items()
    }
    messages["refused address"] = refused_message(web.url("/a.png"))
    assert set(messages.values()) == {GENERIC}, messages
    for reason in ("status 404", "text/html", "missing", "status 301", "5000 bytes", "http(s)"):
        assert reason in caplog.text


def test_the_log_names_the_host_but_not_the_signed_query(
    web: Web, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="lib.outbound")
    refused_message(web.url("/gone.png?sig=SECRET-TOKEN"), allow=["127.0.0.1"])
    assert "127.0.0.1" in caplog.text and "SECRET-TOKEN" not in caplog.text


@pytest.mark.parametrize("chunked", [False, True])
def test_bytes_are_capped_with_or_without_a_declared_length(web: Web, chunked: bool) -> None:
    headers = {"Content-Type": "image/png"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
    web.routes["/big.png"] = (200, headers, b"x" * 5000)
    assert refused_message(web.url("/big.png"), allow=["127.0.0.1"], max_bytes=4999) == GENERIC
    assert fetch(web.url("/big.png"), allow=["127.0.0.1"], max_bytes=5000) == b"x" * 5000


# -- the OpenAI client for a server a visitor chose ------------------------------------------


def guarded_openai(server: FakeOpenAI, allow: list[str] | None = None) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url,
        api_key="sk-visitor",
        max_retries=3,
        http_client=outbound.guarded_http_client(allow or [], timeout=5),
    )


def test_the_guarded_client_refuses_a_loopback_server_at_once(
    openai_server: FakeOpenAI, connects: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = names(monkeypatch, {})
    with pytest.raises(errors.OutboundRefused, match="local or private") as caught:
        with provider_errors():
            guarded_openai(openai_server).models.list()
    assert "PARLEY_OUTBOUND_ALLOW" in str(caught.value)
    assert openai_server.requests == [] and connects == []
    assert asked == ["127.0.0.1"]  # refused once, not retried by the SDK


def test_the_guarded_client_reaches_an_allowed_server(openai_server: FakeOpenAI) -> None:
    client = guarded_openai(openai_server, ["127.0.0.1"])
    assert client.models.list().data
    assert openai_server.requests[-1].headers["authorization"] == "Bearer sk-visitor"


def test_the_guarded_client_follows_no_redirect(web: Web) -> None:
    web.routes["/v1/models"] = (307, {"Location": "http://169.254.169.254/v1/models"}, b"")
    client = openai.OpenAI(
        base_url=web.url("/v1"),
        api_key="sk-visitor",
        max_retries=0,
        http_client=outbound.guarded_http_client(["127.0.0.1"], timeout=5),
    )
    with pytest.raises(openai.APIStatusError):
        client.models.list()
    assert [path for path, _ in web.seen] == ["/v1/models"]


def settings_for(server: FakeOpenAI, **changes: Any) -> Any:
    environ = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
    return dataclasses.replace(resolve_settings(None, {}, environ), **changes)


def test_build_client_guards_only_a_server_the_visitor_chose(openai_server: FakeOpenAI) -> None:
    with pytest.raises(errors.OutboundRefused):
        with provider_errors():
            build_client(settings_for(openai_server, server_trusted=False)).models.list()
    assert openai_server.requests == []
    allowed = settings_for(openai_server, server_trusted=False, outbound_allow=("127.0.0.1",))
    assert build_client(allowed).models.list().data
    assert build_client(settings_for(openai_server)).models.list().data  # the operator's own


def test_image_urls_may_come_from_the_trusted_servers_host_only(
    openai_server: FakeOpenAI,
) -> None:
    trusted = settings_for(openai_server, outbound_allow=("10.0.0.0/8",))
    assert outbound.image_allow(trusted) == ("10.0.0.0/8", "127.0.0.1")
    assert outbound.image_allow(dataclasses.replace(trusted, server_trusted=False)) == (
        "10.0.0.0/8",
    )
