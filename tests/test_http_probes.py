"""HTTP and HTTPS probes on real sockets on 127.0.0.1: status codes, silence, no HTTP, TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trustme

from agent.probes.http import request_bytes, tls_context
from agent.probing import ProbeResult
from agent.targets import Target
from dockping.http_check import HttpCheck, parse_statuses
from tests.probe_support import probe_once

pytestmark = pytest.mark.anyio

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answering(status_line: bytes) -> Handler:
    """A handler that reads the request head and answers with this status line."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(status_line + b"\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return handle


@asynccontextmanager
async def server(handle: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """A server on 127.0.0.1 with this handler; yields its port."""
    listening = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()


async def probe(
    port: int, protocol: str = "http", check: HttpCheck | None = None, timeout: float = 2.0
) -> ProbeResult:
    """One probe of 127.0.0.1:port."""
    target = Target("c", "127.0.0.1", port, protocol, http=check or HttpCheck("/health"))
    return await probe_once(target, timeout)


async def test_a_200_answer_is_up_with_its_status_and_connect_time() -> None:
    """A 200 is up; the result carries the status and a connect time no longer than the whole."""
    async with server(answering(b"HTTP/1.1 200 OK")) as port:
        result = await probe(port)
    assert (result.ok, result.error) == (True, None)
    assert result.detail is not None
    assert result.detail.http_status == 200
    assert result.latency_ms is not None
    assert result.detail.connect_ms is not None
    assert 0 <= result.detail.connect_ms <= result.latency_ms


async def test_a_503_answer_is_down_with_its_status() -> None:
    """A 503 fails with http_status and keeps the code."""
    async with server(answering(b"HTTP/1.1 503 Service Unavailable")) as port:
        result = await probe(port)
    assert (result.ok, result.error, result.latency_ms) == (False, "http_status", None)
    assert result.detail is not None
    assert result.detail.http_status == 503


async def test_a_404_answer_is_down_unless_accepted() -> None:
    """A 404 fails by default and is up when the status list accepts it."""
    async with server(answering(b"HTTP/1.0 404 Not Found")) as port:
        refused = await probe(port)
        accepted = await probe(port, check=HttpCheck("/", parse_statuses("200,404")))
    assert (refused.error, refused.detail and refused.detail.http_status) == ("http_status", 404)
    assert (accepted.ok, accepted.detail and accepted.detail.http_status) == (True, 404)


async def test_a_redirect_is_up_by_default_and_down_where_only_200_is_accepted() -> None:
    """A 302 is within the default 200-399, and fails against "200"; it is not followed."""
    async with server(answering(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere")) as port:
        default = await probe(port)
        strict = await probe(port, check=HttpCheck("/", parse_statuses("200")))
    assert (default.ok, default.detail and default.detail.http_status) == (True, 302)
    assert (strict.error, strict.detail and strict.detail.http_status) == ("http_status", 302)


async def test_a_server_that_never_answers_times_out() -> None:
    """A server that accepts and says nothing makes the probe time out."""
    release = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    async with server(silent) as port:
        result = await probe(port, timeout=0.3)
        release.set()
    assert (result.ok, result.error) == (False, "timeout")


@pytest.mark.parametrize(
    "answer",
    [b"SSH-2.0-OpenSSH_9.6\r\n", b"\x00\x01\x02garbage" * 200, b"HTTP/2 200\r\n", b""],
)
async def test_a_server_that_speaks_no_http_is_a_protocol_error(answer: bytes) -> None:
    """A banner, binary noise, a bad version, or a close without a word: error protocol."""

    async def other(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # read: a close with unread data would reset
        writer.write(answer)
        await writer.drain()
        writer.close()

    async with server(other) as port:
        result = await probe(port)
    assert (result.ok, result.error) == (False, "protocol")


async def test_the_request_names_the_path_and_host_and_asks_to_close() -> None:
    """The server sees one GET of the path with Host and Connection: close."""
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    async with server(record) as port:
        result = await probe(port, check=HttpCheck("/ready?full=1"))
    assert result.ok
    target = Target("c", "127.0.0.1", port, "http")
    assert [request_bytes(target, "/ready?full=1")] == seen
    head = seen[0].decode()
    assert head.startswith("GET /ready?full=1 HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{port}\r\n" in head
    assert "\r\nConnection: close\r\n" in head


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A certificate authority made for these tests."""
    return trustme.CA()


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The test CA as the system's only CA, for the verifying context."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    tls_context.cache_clear()
    yield
    tls_context.cache_clear()


def server_context(ca: trustme.CA, not_after: datetime) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 from the test CA, valid until then."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(
        "127.0.0.1", not_before=not_after - timedelta(days=400), not_after=not_after
    ).configure_cert(context)
    return context


def _at_second(when: datetime) -> datetime:
    return when.replace(microsecond=0)


async def test_https_records_the_expiry_of_an_unverified_certificate(ca: trustme.CA) -> None:
    """Without verification a certificate from an unknown CA is fine, and its expiry is kept."""
    expiry = _at_second(datetime.now(UTC) + timedelta(days=30))
    async with server(answering(b"HTTP/1.1 200 OK"), server_context(ca, expiry)) as port:
        result = await probe(port, "https")
    assert (result.ok, result.error) == (True, None)
    assert result.detail is not None
    assert (200, expiry) == (result.detail.http_status, result.detail.tls_not_after)


async def test_https_keeps_an_expired_certificates_date_when_not_verifying(ca: trustme.CA) -> None:
    """An expired certificate, not verified: up, with its expiry in the past."""
    expiry = _at_second(datetime.now(UTC) - timedelta(days=2))
    async with server(answering(b"HTTP/1.1 200 OK"), server_context(ca, expiry)) as port:
        result = await probe(port, "https")
    assert result.ok
    assert result.detail is not None
    assert expiry == result.detail.tls_not_after


async def test_verification_refuses_an_unknown_ca(ca: trustme.CA) -> None:
    """tls_verify against the system's CAs refuses the test CA's certificate: error tls."""
    expiry = datetime.now(UTC) + timedelta(days=30)
    async with server(answering(b"HTTP/1.1 200 OK"), server_context(ca, expiry)) as port:
        result = await probe(port, "https", HttpCheck("/", verify=True))
    assert (result.ok, result.error) == (False, "tls")


@pytest.mark.usefixtures("trusted")
async def test_verification_accepts_a_valid_certificate_of_a_trusted_ca(ca: trustme.CA) -> None:
    """With the CA trusted, a valid certificate verifies and the probe is up."""
    expiry = _at_second(datetime.now(UTC) + timedelta(days=30))
    async with server(answering(b"HTTP/1.1 200 OK"), server_context(ca, expiry)) as port:
        result = await probe(port, "https", HttpCheck("/", verify=True))
    assert (result.ok, result.error) == (True, None)
    assert result.detail is not None
    assert expiry == result.detail.tls_not_after


@pytest.mark.usefixtures("trusted")
async def test_verification_refuses_an_expired_certificate_of_a_trusted_ca(ca: trustme.CA) -> None:
    """With the CA trusted, an expired certificate still fails verification: error tls."""
    expiry = datetime.now(UTC) - timedelta(days=2)
    async with server(answering(b"HTTP/1.1 200 OK"), server_context(ca, expiry)) as port:
        result = await probe(port, "https", HttpCheck("/", verify=True))
    assert (result.ok, result.error) == (False, "tls")


async def test_https_to_a_plain_http_server_is_a_tls_error() -> None:
    """A server without TLS, answering whatever comes, fails the handshake: error tls."""

    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async with server(plain) as port:
        result = await probe(port, "https")
    assert (result.ok, result.error) == (False, "tls")
