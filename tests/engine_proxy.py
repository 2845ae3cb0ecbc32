"""A unix-socket proxy in front of the real engine that can cut its event stream.

While cut, every /events request is dropped at once; restored, a reconnect's `since` is
moved to the restore, so that the events of the cut are lost as if the engine forgot them.
Everything else passes through, one request per connection.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from pathlib import Path

_SINCE = re.compile(rb"since=[0-9.]+")


class EngineProxy:
    """Forward a unix socket to the engine's; cut() and restore() its event stream."""

    def __init__(self, path: Path, engine: str = "/var/run/docker.sock") -> None:
        self.path = path
        self.engine = engine
        self.cut_streams = False
        self._since: bytes | None = None
        self._streams: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        """The Docker URL to give the agent."""
        return f"unix://{self.path}"

    def cut(self) -> None:
        """Drop the event streams open now, and refuse new ones."""
        with self._lock:
            self.cut_streams = True
            for stream in self._streams:
                stream.shutdown(socket.SHUT_RDWR)
            self._streams.clear()

    def restore(self) -> None:
        """Accept event streams again, replaying nothing from before now."""
        with self._lock:
            self._since = f"since={time.time():.9f}".encode()
            self.cut_streams = False

    def close(self) -> None:
        """Stop accepting; open connections end with the engine's."""
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(65536)
                if not chunk:
                    return
                head += chunk
            first = head.split(b"\r\n", 1)[0]
            events = b"/events" in first
            with self._lock:
                if events and self.cut_streams:
                    return
                if events and self._since is not None:
                    head = _SINCE.sub(self._since, head, count=1)
                if events:
                    self._streams.append(client)
            head = head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as engine:
                engine.connect(self.engine)
                engine.sendall(head)
                threading.Thread(target=_pump, args=(client, engine), daemon=True).start()
                _pump(engine, client)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while chunk := source.recv(65536):
            sink.sendall(chunk)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
