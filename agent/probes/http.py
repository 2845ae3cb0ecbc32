"""HTTP and HTTPS probes: one GET over the probe's own socket, up to the status line.

A minimal HTTP/1.1 exchange on the connected socket, driven by the event loop's socket calls
(TLS through an ssl.SSLObject on memory buffers): no transport, stream or client session per
probe. bench/http_client_choice.py measured it against aiohttp and httpx, and
bench/agent_http_probe.py the agent against a bare loop doing the same GETs; README has the
figures. The request asks for `Connection: close`, and only the status line is read: at most
_STATUS_LINE_MAX bytes a read, and no read after it.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache

from agent.probes.sockets import open_socket
from agent.targets import Target
from dockping.contract import ErrorKind
from dockping.http_check import HttpCheck

# More than any status line needs: a server that sends this much without one speaks no HTTP.
_STATUS_LINE_MAX = 1024
_RECV = _STATUS_LINE_MAX
# TLS records as they come: a handshake carries the certificate chain, a few kB.
_TLS_RECV = 16384
_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] ([1-5][0-9][0-9])(?:[ \t][^\r\n]*)?\r?\n")
_DEFAULT = HttpCheck()
# A certificate's DER to its expiry: the same few certificates come back on every probe.
_NOT_AFTER: dict[bytes, datetime] = {}
_NOT_AFTER_MAX = 4096


@dataclass(frozen=True, slots=True)
class HttpDetail:
    """What an HTTP(S) probe learnt beside its outcome."""

    http_status: int | None = None
    connect_ms: float | None = None
    tls_not_after: datetime | None = None


class HttpFailure(Exception):
    """An HTTP(S) probe failed past the connect: its error kind, and what it learnt so far."""

    kind: ErrorKind = "other"

    def __init__(self, message: str, detail: HttpDetail) -> None:
        super().__init__(message)
        self.detail = detail


class HttpStatusError(HttpFailure):
    """The server answered with a status code the target does not accept."""

    kind = "http_status"


class ProtocolError(HttpFailure):
    """The server's answer is not HTTP (or it closed without one)."""

    kind = "protocol"


class TlsError(HttpFailure):
    """The TLS handshake failed: no TLS, an unverifiable or expired certificate, ..."""

    kind = "tls"


def request_bytes(target: Target, path: str) -> bytes:
    """The GET request for a target: Host names its address and port."""
    return _request(target.ip, target.port, path)


@lru_cache(maxsize=65536)
def _request(ip: str, port: int | None, path: str) -> bytes:
    # Every probe of a target sends the same bytes: made once, not per probe.
    host = f"[{ip}]" if ":" in ip else ip
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: dockping\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("ascii")


@cache
def tls_context(verify: bool) -> ssl.SSLContext:
    """The client context: the chain verified against the system's CAs, or nothing checked.

    Never the host name: the probe dials the container's address, which certificates do not
    name. Cached, so that a probe makes no context of its own (SSL_CERT_FILE is read once).
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    if not verify:
        context.verify_mode = ssl.CERT_NONE
    return context


def not_after(der: bytes) -> datetime:
    """When the certificate (DER) expires."""
    found = _NOT_AFTER.get(der)
    if found is None:
        # Imported at the first certificate: an agent without https targets never loads it.
        from cryptography import x509

        found = x509.load_der_x509_certificate(der).not_valid_after_utc.astimezone(UTC)
        if len(_NOT_AFTER) >= _NOT_AFTER_MAX:
            _NOT_AFTER.clear()
        _NOT_AFTER[der] = found
    return found


def status_of(head: bytes, detail: HttpDetail) -> int | None:
    """The status code once `head` holds a status line; ProtocolError once it cannot."""
    match = _STATUS_LINE.match(head)
    if match is not None:
        return int(match.group(1))
    started = head.startswith(b"HTTP/1.") or b"HTTP/1.".startswith(head)
    if b"\n" in head or len(head) >= _STATUS_LINE_MAX or not started:
        raise ProtocolError(f"not an HTTP status line: {head[:64]!r}", detail)
    return None


async def probe_http(target: Target) -> HttpDetail:
    """GET the target's path over TCP; the status line decides."""
    return await _exchange(target, tls=False)


async def probe_https(target: Target) -> HttpDetail:
    """GET the target's path over TLS; the status line decides, the certificate's expiry is kept."""
    return await _exchange(target, tls=True)


async def _exchange(target: Target, tls: bool) -> HttpDetail:
    assert target.port is not None
    check = target.http or _DEFAULT
    loop = asyncio.get_running_loop()
    sock = open_socket(target)
    try:
        started = time.perf_counter_ns()
        await loop.sock_connect(sock, (target.ip, target.port))
        detail = HttpDetail(connect_ms=(time.perf_counter_ns() - started) // 1000 / 1000)
        request = request_bytes(target, check.path)
        if tls:
            session = _TlsSession(loop, sock, tls_context(check.verify), detail)
            detail = await session.handshake()
            status = await session.exchange(request)
        else:
            await loop.sock_sendall(sock, request)
            head = b""
            while (found := status_of(head, detail)) is None:
                data = await loop.sock_recv(sock, _RECV)
                if not data:
                    raise ProtocolError(_closed(head), detail)
                head += data
            status = found
    finally:
        sock.close()
    detail = HttpDetail(status, detail.connect_ms, detail.tls_not_after)
    if not check.accepts(status):
        raise HttpStatusError(f"status {status}", detail)
    return detail


def _closed(head: bytes) -> str:
    return "closed before a status line" + (f": {head[:64]!r}" if head else "")


class _TlsSession:
    """TLS over a connected non-blocking socket, through memory buffers and loop calls."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        context: ssl.SSLContext,
        detail: HttpDetail,
    ) -> None:
        self.loop = loop
        self.sock = sock
        self.detail = detail
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing)

    async def _flush(self) -> None:
        data = self.outgoing.read()
        if data:
            await self.loop.sock_sendall(self.sock, data)

    async def _fill(self) -> bool:
        data = await self.loop.sock_recv(self.sock, _TLS_RECV)
        if not data:
            self.incoming.write_eof()
            return False
        self.incoming.write(data)
        return True

    async def handshake(self) -> HttpDetail:
        """Shake hands; the detail gains the certificate's expiry."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    raise TlsError("closed during the handshake", self.detail) from None
            except ssl.SSLError as exc:
                raise TlsError(exc.reason or str(exc), self.detail) from None
        await self._flush()
        der = self.tls.getpeercert(binary_form=True)
        if der:
            self.detail = HttpDetail(None, self.detail.connect_ms, not_after(der))
        return self.detail

    async def exchange(self, request: bytes) -> int:
        """Send the request and read up to the status line."""
        self.tls.write(request)
        await self._flush()
        head = b""
        eof = False
        while (status := status_of(head, self.detail)) is None:
            try:
                data = self.tls.read(_RECV)
            except ssl.SSLWantReadError:
                if eof:
                    raise ProtocolError(_closed(head), self.detail) from None
                eof = not await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                raise ProtocolError(_closed(head), self.detail) from None
            except ssl.SSLError as exc:
                raise TlsError(exc.reason or str(exc), self.detail) from None
            if not data:
                raise ProtocolError(_closed(head), self.detail)
            head += data
        return status
