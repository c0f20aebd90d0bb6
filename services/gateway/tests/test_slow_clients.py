"""Slow and numerous clients against `python -m gateway_service` (the real listener settings): a
connection that sends nothing, its headers or its body too slowly is cut off (408, OpenAI-style);
oversized or unparsable headers get 431/400 the same way; past GATEWAY_MAX_CONNECTIONS a new
connection gets 503 with Retry-After. After each, the gateway answers the next client."""

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from services.gateway.tests.test_process import gateway_env, spawn_gateway, unused_port

API_KEY = "sk-slow-clients"
HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 0.5
MAX_CONNECTIONS = 4
# Well past every deadline above: a read that takes this long means nothing cut the client off.
READ_SECONDS = 5


@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[tuple[str, int]]:
    port = unused_port()
    log = tmp_path_factory.mktemp("slow") / "gateway.log"
    env = gateway_env(
        GATEWAY_API_KEY=API_KEY,
        PORT=str(port),
        GATEWAY_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        GATEWAY_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        GATEWAY_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        DRAIN_SECONDS="0",
    )
    proc, url = spawn_gateway(env, log)
    try:
        yield url, port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=READ_SECONDS)
    sock.settimeout(READ_SECONDS)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def parse(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


def assert_error(raw: bytes, status: int, code: str) -> dict[str, str]:
    got, headers, body = parse(raw)
    assert got == status, raw
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == code
    assert headers["content-type"] == "application/json"
    return headers


def still_answers(url: str) -> None:
    response = httpx.get(f"{url}/v1/models", headers={"authorization": f"Bearer {API_KEY}"}, timeout=5)
    # No backends run here: 503 from the route itself shows the request went all the way through.
    assert response.status_code == 503 and response.json()["error"]["code"], response.text


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(gateway):
    url, port = gateway
    with connect(port) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        took = time.monotonic() - started
    assert HEADER_TIMEOUT * 0.8 <= took < READ_SECONDS - 1, took
    still_answers(url)


def test_headers_sent_too_slowly_get_408(gateway):
    url, port = gateway
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n")
        # A byte at a time, each well inside the deadline: the deadline is for the whole header.
        for byte in b"x-slow: 1234567890":
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            time.sleep(0.05)
        raw = read_until_closed(sock)
        took = time.monotonic() - started
    assert_error(raw, 408, "request_timeout")
    assert took < READ_SECONDS - 1, took
    still_answers(url)


def test_a_body_sent_too_slowly_gets_408_and_the_connection_closes(gateway):
    url, port = gateway
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 200}]}).encode()
    with connect(port) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\n"
            + f"authorization: Bearer {API_KEY}\r\ncontent-type: application/json\r\n".encode()
            + f"content-length: {len(body)}\r\n\r\n".encode()
        )
        for i in range(0, len(body), 8):
            try:
                sock.sendall(body[i : i + 8])
            except OSError:
                break
            time.sleep(0.05)
        raw = read_until_closed(sock)
        took = time.monotonic() - started
    headers = assert_error(raw, 408, "request_timeout")
    assert headers["connection"] == "close"
    assert BODY_TIMEOUT * 0.8 <= took < READ_SECONDS - 1, took
    still_answers(url)


def test_a_nul_in_a_header_and_oversized_headers_get_error_bodies(gateway):
    url, port = gateway
    with connect(port) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\nx-note: a\x00b\r\n\r\n")
        assert_error(read_until_closed(sock), 400, "invalid_http_request")
    with connect(port) as sock:
        # Just past the bound, then nothing more: the answer is read before the close.
        filler = b"".join(b"x-filler-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nhost: gateway\r\n" + filler)
        assert_error(read_until_closed(sock), 431, "request_headers_too_large")
    still_answers(url)


def test_connections_past_the_cap_get_503_with_retry_after(gateway):
    url, port = gateway
    held = []
    try:
        for _ in range(MAX_CONNECTIONS):
            sock = connect(port)
            # A whole request and its answer: the connection then stays open (keep-alive).
            sock.sendall(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            held.append(sock)
        with connect(port) as extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nhost: gateway\r\n\r\n")
            headers = assert_error(read_until_closed(extra), 503, "overloaded")
        assert int(headers["retry-after"]) >= 1
    finally:
        for sock in held:
            sock.close()
    for _ in range(50):
        try:
            still_answers(url)
            return
        except (AssertionError, httpx.TransportError):
            time.sleep(0.1)  # the server notices the closed sockets on its next loop turns
    still_answers(url)
