"""Parley's OpenAI-compatible test server: a real HTTP server on loopback.

Every test and benchmark talks to this instead of api.openai.com, through the real SDK and
real sockets, so streaming, disconnects, timeouts and error mapping are exercised for real.

    with FakeOpenAI() as server:
        server.script("Hello there")              # next chat reply; default is "Echo: <msg>"
        server.fail(429, retry_after=2)           # next /v1 request gets the OpenAI error shape
        server.misbehave("error", after=3)        # next chat stream goes wrong (ODD_ANSWERS)
        server.embedding_delay = 0.25             # a CPU embedder: 0.25 s per input
        server.transcription_enabled = True       # /v1/audio/transcriptions answers
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")

Standalone: ``python -m tests.fake_openai --port 8765 [--first-token-delay 0.1] [--models a,b]
[--embedding-delay 0.25]``.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import json
import select
import signal
import socket
import struct
import threading
import time
import uuid
from collections import deque
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import Any
from urllib.parse import urlsplit

from tests import fake_flavours
from tests.fake_images import (
    chat_usage,
    count_words,
    embed,
    embedding_items,
    error_body,
    finish_text,
    image_events,
    images_response,
    message_text,
    reply_texts,
)
from tests.waits import WAIT

DEFAULT_MODELS = ["gpt-5-mini", "gpt-5", "gpt-4.1-mini", "text-embedding-3-small", "gpt-image-2"]
MAX_EMBEDDING_INPUTS = 2048
_FINGERPRINT = "fp_parley_fake"
# What `misbehave` can make the next chat answer do, as servers seen in the wild did.
ODD_ANSWERS = {
    "html": "a 200 with an HTML page (a proxy's sign-in page) instead of a stream",
    "malformed": "an event whose data is not JSON, then the end of the stream",
    "error": "an error event mid-stream, as llama-cpp-python sends on context overflow",
    "end": "the stream ends early: no [DONE], no finish_reason",
    "empty": "a complete, well-formed stream with no text in it",
}
TRANSCRIPT_MARKER = b"SAY:"  # audio holding it is heard as the text after it
LOGIN_PAGE = b"<!doctype html><html><body><h1>Sign in to continue</h1></body></html>"
LLAMA_CONTEXT_ERROR = {
    "message": "Requested tokens (5120) exceed context window of 4096",
    "type": "internal_server_error",
    "param": None,
    "code": None,
}


@dataclass
class RecordedRequest:
    """One request as the server saw it; ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    time: float


@dataclass
class _Script:
    texts: list[str]
    usage: bool
    chunk_size: int
    first_byte_delay: float
    chunk_delay: float | None


@dataclass
class _Fault:
    status: int
    message: str | None
    code: str | None
    type: str | None
    param: str | None
    retry_after: float | None
    route: str | None
    times: int


class _ClientGone(Exception):
    """The client hung up before the stream ended."""


class _Dropped(Exception):
    """We cut the connection on purpose (drop_after)."""


class _Finished(Exception):
    """The (odd) response is complete; nothing more to send."""


class _ApiError(Exception):
    """Answer with OpenAI's error JSON; ``fields`` go to ``error_body``."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(status)
        self.status, self.headers = status, headers or {}
        self.body = error_body(status, message, **fields)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # 20+ clients connect at once; the default backlog of 5 stalls

    def __init__(self, address: tuple[str, int], fake: FakeOpenAI) -> None:
        self.fake = fake
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall on a box without DNS.
        TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-response is routine here, not worth a traceback

    def close_connections(self) -> None:
        # Keep-alive handler threads would otherwise keep serving after stop().
        with self.conn_lock:
            for conn in list(self.connections):
                with suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked bodies, so a cut stream is detectably incomplete
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # silent by default; in particular never print headers (Authorization)

    def setup(self) -> None:
        super().setup()
        # Without it, Nagle's algorithm and the client's delayed ACK held each keep-alive
        # request's answer back: 45 ms a request, 9 ms with it.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with suppress(OSError):
            super().finish()
        with self.server.conn_lock:
            self.server.connections.discard(self.connection)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ---------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        if getattr(self, "_closed", False):
            return self._reset()
        self._streaming = self._done = False
        raw = self._read_body()
        path = urlsplit(self.path).path.rstrip("/")
        try:
            body = _form(raw, self.headers) if _is_form(self.headers) else json.loads(raw or "null")
        except ValueError:
            body = ...  # sentinel: unparseable, answered with 400 below
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake._record(
            RecordedRequest(method, path, headers, None if body is ... else body, time.time())
        )
        try:
            self._route(method, path, body, headers)
        except _ApiError as err:
            self._send_json(err.status, err.body, err.headers)
        except _Dropped:
            self.close_connection = True
        except _Finished:
            pass
        except (_ClientGone, OSError):
            self.close_connection = True
            if self._streaming and not self._done:
                fake._count_disconnect()
        except Exception as exc:  # a bug in the fake: surface it to tests, not to stderr
            fake.errors.append(f"{method} {path}: {exc!r}")
            with suppress(OSError):
                self._send_json(500, error_body(500, f"fake server bug: {exc!r}"))

    def _send_json(
        self,
        status: int,
        obj: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _peer_closed(self) -> bool:
        # A FIN from the client shows up as a readable socket with nothing to read; checking
        # before each write catches "Stop" even when the kernel would still accept our bytes.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _begin_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-request-id", "req_" + uuid.uuid4().hex)
        self.end_headers()
        self._streaming = True

    def _write(self, data: bytes, last: bool = False) -> None:
        if self._peer_closed():
            raise _ClientGone
        out = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        # [DONE] and the terminating chunk go out in one write so "complete" is atomic.
        self.wfile.write(out + (b"0\r\n\r\n" if last else b""))
        self._done = last

    def _event(self, obj: Any, event: str | None = None) -> None:
        prefix = f"event: {event}\n" if event else ""
        self._write(f"{prefix}data: {json.dumps(obj)}\n\n".encode())

    def _reset(self) -> None:
        # The server closed this kept-alive connection after its last answer, and the
        # client sent another request on it before it noticed: reset by peer, unanswered.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with suppress(OSError):
            self.connection.close()

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _Dropped

    # -- routes -----------------------------------------------------------------------------
    def _route(self, method: str, path: str, body: Any, headers: dict[str, str]) -> None:
        fake = self.server.fake
        if method == "GET" and path.startswith("/files/"):
            data = fake._files.get(path.removeprefix("/files/").removesuffix(".png"))
            if data is None:
                raise _ApiError(404, "No such file", code="not_found")
            return self._send_json(200, data, content_type="image/png")
        if (flavoured := fake_flavours.answer(fake, method, path, body, headers)) is not None:
            return self._send_json(*flavoured)
        if not path.startswith("/v1/"):
            raise _ApiError(404, f"Invalid URL ({method} {path})", code="")
        model = body.get("model", "") if isinstance(body, dict) else ""
        generation = fake._generation
        fake._sleep(fake._take(fake._hangs, path) or 0.0)
        if fake._generation != generation:
            # reset() ran while this request hung: it belongs to an earlier test, and must
            # not take the next test's scripts or faults.
            self._drop()
        fake._check_fault(path, model)
        if fake.api_key is not None and headers.get("authorization") != f"Bearer {fake.api_key}":
            raise _ApiError(401)
        if body is ...:
            raise _ApiError(400, "We could not parse the JSON body of your request.")
        if method == "GET" and path == "/v1/models":
            return self._send_json(
                200, {"object": "list", "data": [_model(m) for m in list(fake.models)]}
            )
        if method == "GET" and path.startswith("/v1/models/"):
            name = path.removeprefix("/v1/models/")
            if name not in fake.models:
                raise _ApiError(404, model=name)
            return self._send_json(200, _model(name))
        body = body if isinstance(body, dict) else {}
        if method == "POST" and path == "/v1/chat/completions":
            return self._chat(body)
        if method == "POST" and path == "/v1/embeddings" and fake.embeddings_enabled:
            return self._embeddings(body)
        if method == "POST" and path == "/v1/rerank" and fake.rerank_enabled:
            return self._rerank(body)
        if method == "POST" and path == "/v1/images/generations":
            return self._images(body)
        if method == "POST" and path == "/v1/audio/transcriptions" and fake.transcription_enabled:
            return self._transcription(body)
        raise _ApiError(404, f"Invalid URL ({method} {path})", code="")

    def _chat(self, req: dict[str, Any]) -> None:
        fake = self.server.fake
        model, messages = req.get("model"), req.get("messages")
        for name, value in (("model", model), ("messages", messages)):
            if not value:
                raise _ApiError(
                    400,
                    f"Missing required parameter: '{name}'.",
                    code="missing_required_parameter",
                    param=name,
                )
        if fake.strict_models and model not in fake.models:
            raise _ApiError(404, model=model)
        prompt_tokens = sum(count_words(message_text(m)) for m in messages)
        flavour = fake.flavoured
        refused = flavour.overflow(req) if flavour else None
        self._closed = refused is not None and flavour.closes_after_overflow
        if refused == fake_flavours.SILENT:
            self._begin_stream()
            self._write(b"", last=True)  # llama-cpp-python: no event, a complete body
            raise _Finished
        if refused is not None:
            return self._send_json(*refused)
        if fake.context_limit is not None and prompt_tokens > fake.context_limit:
            raise _ApiError(
                400,
                f"This model's maximum context length is "
                f"{fake.context_limit} tokens. However, your messages resulted in "
                f"{prompt_tokens} tokens. Please reduce the length of the messages.",
                code="context_length_exceeded",
                param="messages",
            )
        n = max(1, int(req.get("n") or 1))
        script = fake._take(fake._scripts, path=None)
        texts = reply_texts(script.texts if script else None, messages, n)
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        outs = [finish_text(t, req.get("stop"), limit) for t in texts]
        completion_tokens = sum(count_words(t) for t, _ in outs)
        usage = None
        if fake.send_usage and (script is None or script.usage):
            usage = chat_usage(prompt_tokens, completion_tokens)
        streams_usage = flavour is None or flavour.streams_usage
        delay = (
            fake.chunk_delay if script is None or script.chunk_delay is None else script.chunk_delay
        )
        fake._sleep(script.first_byte_delay if script else 0.0)
        base = {
            "id": "chatcmpl-" + uuid.uuid4().hex[:24],
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": _FINGERPRINT,
            "service_tier": "default",
        }
        if not req.get("stream"):
            fake._sleep(fake.default_first_token_delay)
            choices = [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": reason,
                }
                for i, (text, reason) in enumerate(outs)
            ]
            result = {**base, "object": "chat.completion", "choices": choices}
            if usage is not None:
                result["usage"] = usage
            return self._send_json(200, result)
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        base["object"] = "chat.completion.chunk"
        if include_usage and streams_usage:
            base["usage"] = None  # the real API puts a null usage on every chunk

        def chunk(index: int, delta: dict[str, Any], reason: str | None = None) -> None:
            self._event(
                {
                    **base,
                    "choices": [
                        {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
                    ],
                }
            )

        odd, odd_after = fake._take(fake._odd, path=None) or (None, 0)
        if odd == "html":
            return self._send_json(200, LOGIN_PAGE, content_type="text/html; charset=utf-8")
        self._begin_stream()
        drop = fake._take(fake._drops, path=None)
        fake._sleep(fake.default_first_token_delay)
        first = (flavour.first_delta if flavour else None) or {
            "role": "assistant",
            "content": "",
            "refusal": None,
        }
        for i in range(n):
            chunk(i, first)
        size = script.chunk_size if script else 4
        pieces = [[t[j : j + size] for j in range(0, len(t), size)] for t, _ in outs]
        if odd == "empty":
            pieces = [[] for _ in outs]
        sent = 0
        for step in range(max(len(p) for p in pieces)):
            for i, parts in enumerate(pieces):
                if step < len(parts):
                    if drop is not None and sent >= drop:
                        self._drop()
                    if odd in ("malformed", "error", "end") and sent >= odd_after:
                        self._odd_end(odd)
                    chunk(i, {"content": parts[step]})
                    if flavour and flavour.empty_deltas:
                        chunk(i, {"content": ""})
                    sent += 1
            fake._sleep(delay)
        if drop is not None and sent >= drop:
            self._drop()
        if odd in ("malformed", "error", "end"):
            self._odd_end(odd)
        for i, (_, reason) in enumerate(outs):
            chunk(i, {}, reason)
        if include_usage and usage is not None and streams_usage:
            self._event({**base, "choices": [], "usage": usage})
        self._write(b"data: [DONE]\n\n", last=True)

    def _odd_end(self, kind: str) -> None:
        if kind == "malformed":
            self._write(b'data: {"choices": [{"delta": {"content": "unfinished\n\n')
        elif kind == "error":
            self._event({"error": LLAMA_CONTEXT_ERROR})
        self._write(b"", last=True)  # a complete HTTP body, but no [DONE]
        raise _Finished

    def _embeddings(self, req: dict[str, Any]) -> None:
        fake, raw = self.server.fake, req.get("input")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and isinstance(raw[0], int)):
            raw = [raw]
        if not isinstance(raw, list) or not raw or len(raw) > MAX_EMBEDDING_INPUTS:
            msg = f"'$.input' must have between 1 and {MAX_EMBEDDING_INPUTS} items."
            raise _ApiError(400, msg, param="input")
        texts = [x if isinstance(x, str) else " ".join(f"tok{t}" for t in x) for x in raw]
        if any(not t.strip() for t in texts):
            raise _ApiError(
                400, "'$.input' is invalid. Please check the API reference.", param="input"
            )
        if fake.embedding_delay > 0:
            # One request at a time, like a one-slot CPU server, which also keeps working
            # on a request whose client has given up.
            with fake._embedding_slot:
                fake._sleep(fake.embedding_delay * len(texts))
        if fake.embedding_window is not None:
            texts = [" ".join(t.split()[: fake.embedding_window]) for t in texts]
        dim = int(req.get("dimensions") or fake.embedding_dimensions)
        as_b64 = req.get("encoding_format") == "base64"
        data = embedding_items(texts, dim, as_b64)
        tokens = sum(count_words(t) for t in texts)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": req.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _rerank(self, req: dict[str, Any]) -> None:
        query, documents = req.get("query"), req.get("documents")
        if not isinstance(query, str) or not isinstance(documents, list) or not documents:
            raise _ApiError(400, "'query' and 'documents' are required.", param="documents")
        dim = self.server.fake.embedding_dimensions
        asked = embed(query, dim)
        scores = [sum(a * b for a, b in zip(asked, embed(str(d), dim), strict=True))
                  for d in documents]  # fmt: skip
        ranked = sorted(range(len(documents)), key=lambda i: -scores[i])
        top = int(req.get("top_n") or len(documents))
        results = [{"index": i, "relevance_score": scores[i]} for i in ranked[:top]]
        self._send_json(200, {"model": req.get("model", ""), "results": results})

    def _images(self, req: dict[str, Any]) -> None:
        fake, prompt = self.server.fake, req.get("prompt")
        if not prompt:
            raise _ApiError(
                400,
                "Missing required parameter: 'prompt'.",
                code="missing_required_parameter",
                param="prompt",
            )
        fake._sleep(fake.default_first_token_delay)
        if not req.get("stream"):
            url_shape = (req.get("response_format") or fake.image_shape) == "url"
            return self._send_json(
                200,
                images_response(
                    req,
                    corrupt=fake.corrupt_images,
                    revise=fake.revise_prompts,
                    store=fake._store_file if url_shape else None,
                ),
            )
        self._begin_stream()
        drop = fake._take(fake._drops, path=None)
        for sent, (name, event) in enumerate(image_events(req, corrupt=fake.corrupt_images)):
            if drop is not None and sent >= drop:
                self._drop()
            self._event(event, event=name)
            fake._sleep(fake.chunk_delay)
        self._write(b"", last=True)

    def _transcription(self, form: dict[str, Any]) -> None:
        audio, model = form.get("file"), form.get("model")
        if not isinstance(audio, bytes) or not model:
            raise _ApiError(400, "'file' and 'model' are required.", param="file")
        self._send_json(200, {"text": transcript(audio)})


def transcript(audio: bytes) -> str:
    """What the fake hears: the text after a ``SAY:`` marker in the audio, else its size."""
    _, marker, said = audio.partition(TRANSCRIPT_MARKER)
    return said.decode(errors="replace").strip() if marker else f"Heard {len(audio)} bytes."


def _is_form(headers: Any) -> bool:
    return headers.get("Content-Type", "").startswith("multipart/form-data")


def _form(raw: bytes, headers: Any) -> dict[str, Any]:
    """A multipart body's fields: text as str, uploaded files as bytes."""
    head = f"Content-Type: {headers.get('Content-Type')}\r\n\r\n".encode()
    message = email.message_from_bytes(head + raw, policy=email.policy.HTTP)
    if not message.is_multipart():
        raise ValueError("not a multipart body")
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        value = part.get_payload(decode=True) or b""
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = value if part.get_filename() else value.decode()
    return fields


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1700000000, "owned_by": "parley-fake"}


class FakeOpenAI:
    """The fake server. Every knob is a plain attribute; ``reset()`` restores them all."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: list[str] | None = None,
        first_token_delay: float = 0.0,
        chunk_delay: float = 0.0,
    ) -> None:
        self.host = host
        self._bind_port = port
        self._defaults = (list(models or DEFAULT_MODELS), first_token_delay, chunk_delay)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._embedding_slot = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Forget scripts, faults, records and files, and put every setting back to default."""
        models, first_token_delay, chunk_delay = self._defaults
        with self._lock:
            self._generation = getattr(self, "_generation", 0) + 1
            self.models: list[str] = list(models)
            self.default_first_token_delay: float = first_token_delay
            self.chunk_delay: float = chunk_delay
            self.context_limit: int | None = None
            self.strict_models = False  # when True, unknown chat models get 404 model_not_found
            self.api_key: str | None = None  # when set, other bearer tokens get 401
            self.send_usage = True
            self.embeddings_enabled = True
            self.embedding_dimensions = 256
            self.embedding_delay = 0.0  # seconds per input, one request at a time
            # When set, each input is cut to its first N words, without a word, as a
            # MiniLM-class server truncates past its window (256 word pieces).
            self.embedding_window: int | None = None
            # When True, POST /v1/rerank answers as llama-server --reranking and vLLM do,
            # scoring each document by its embedding's cosine with the query's.
            self.rerank_enabled = False
            # When True, POST /v1/audio/transcriptions answers (`transcript`); off, it is a
            # 404 as on most servers, so capabilities say "no transcription" by default.
            self.transcription_enabled = False
            self.image_shape = "b64_json"
            self.revise_prompts = False
            self.corrupt_images = False
            self.disconnects = 0
            self.errors: list[str] = []
            self._requests: list[RecordedRequest] = []
            self._scripts: deque[_Script] = deque()
            self._faults: list[_Fault] = []
            self._hangs: deque[tuple[str | None, float]] = deque()
            self._drops: deque[int] = deque()
            self._odd: deque[tuple[str, int]] = deque()
            self._files: dict[str, bytes] = {}
            self.flavoured: fake_flavours.Flavour | None = None  # see flavour()

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        if self._httpd is None:
            self._stopping.clear()
            self._httpd = _Server((self.host, self._bind_port), self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in hang()/delays
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeOpenAI is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- scripting and faults ----------------------------------------------------------------
    def script(
        self,
        text: str | list[str],
        *,
        usage: bool = True,
        chunk_size: int = 4,
        first_byte_delay: float = 0.0,
        chunk_delay: float | None = None,
    ) -> None:
        """Queue the next chat reply; a list gives the alternatives for ``n``.

        ``chunk_delay=None`` means the server-wide ``chunk_delay``; ``usage=False`` makes the
        reply carry no usage at all, like servers that never report it.
        """
        texts = [text] if isinstance(text, str) else list(text) or [""]
        with self._lock:
            self._scripts.append(
                _Script(texts, usage, max(1, chunk_size), first_byte_delay, chunk_delay)
            )

    def fail(
        self,
        status: int,
        *,
        message: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
        type: str | None = None,
        param: str | None = None,
        route: str | None = None,
    ) -> None:
        """Make the next ``times`` /v1 requests (whose path contains ``route``) fail.

        The body is OpenAI's error shape with a realistic default message and code for the
        status (401 invalid_api_key, 404 model_not_found, 429 rate_limit_exceeded...).
        """
        with self._lock:
            self._faults.append(
                _Fault(status, message, code, type, param, retry_after, route, times)
            )

    def drop_after(self, n_chunks: int) -> None:
        """Cut the TCP connection of the next stream after ``n_chunks`` content chunks."""
        with self._lock:
            self._drops.append(n_chunks)

    def flavour(self, name: str, **options: Any) -> None:
        """Answer as llama-server, vLLM, Ollama... would (`tests/fake_flavours.py`)."""
        self.flavoured = fake_flavours.Flavour(name, **options)

    def misbehave(self, kind: str, *, after: int = 0) -> None:
        """Make the next chat answer go wrong in one of the ways in ``ODD_ANSWERS``, after
        ``after`` content chunks (for the kinds that happen mid-stream)."""
        if kind not in ODD_ANSWERS:
            raise ValueError(f"unknown odd answer {kind!r}: one of {', '.join(ODD_ANSWERS)}")
        with self._lock:
            self._odd.append((kind, after))

    def hang(self, seconds: float, *, route: str | None = None) -> None:
        """Delay the first byte of the next /v1 response (whose path contains ``route``)."""
        with self._lock:
            self._hangs.append((route, seconds))

    # -- inspection -------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def requests_to(self, path_suffix: str) -> list[RecordedRequest]:
        """Recorded requests whose path ends with ``path_suffix`` (e.g. "/chat/completions")."""
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    def wait_for_disconnects(self, count: int = 1, timeout: float = WAIT) -> bool:
        """Poll until ``disconnects`` reaches ``count``; the server notices on its next write."""
        deadline = time.monotonic() + timeout
        while self.disconnects < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.disconnects >= count

    # -- used by the handler ----------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _store_file(self, data: bytes) -> str:
        file_id = uuid.uuid4().hex
        self._files[file_id] = data
        return f"{self.url}/files/{file_id}.png"

    def _count_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _take(self, queue: deque[Any], path: str | None) -> Any:
        with self._lock:
            if not queue:
                return None
            if path is None:
                return queue.popleft()
            for item in queue:  # route-filtered queues hold (route, value) pairs
                if item[0] is None or item[0] in path:
                    queue.remove(item)
                    return item[1]
        return None

    def _check_fault(self, path: str, model: str) -> None:
        with self._lock:
            fault = next((f for f in self._faults if f.route is None or f.route in path), None)
            if fault is None:
                return
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
        headers = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
        raise _ApiError(
            fault.status,
            fault.message,
            headers,
            code=fault.code,
            type=fault.type,
            param=fault.param,
            model=model,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--first-token-delay", type=float, default=0.0, help="seconds")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between deltas")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated")
    parser.add_argument("--embedding-delay", type=float, default=0.0, help="seconds per input")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    server = FakeOpenAI(
        args.host,
        args.port,
        models=models,
        first_token_delay=args.first_token_delay,
        chunk_delay=args.chunk_delay,
    )
    server.embedding_delay = args.embedding_delay
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with server:
        # One line on stdout so a parent process can wait for readiness.
        print(f"fake OpenAI listening on {server.base_url}", flush=True)
        with suppress(KeyboardInterrupt):
            done.wait()


if __name__ == "__main__":
    main()
