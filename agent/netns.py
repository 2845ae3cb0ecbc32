"""Sockets made inside another network namespace: a container's, entered by a worker thread.

A socket belongs to the namespace it was made in for its whole life, so only the making needs
the namespace: one thread enters it with setns(2) and makes the socket, and the connect runs on
the event loop like any other. The event loop's own thread never leaves the agent's namespace,
so nothing else the agent opens (the Docker socket, ingest) can end up in a container's.
"""

from __future__ import annotations

import ctypes
import os
import queue
import resource
import socket
import threading
from collections import deque
from concurrent.futures import Future
from functools import cache
from pathlib import Path

CLONE_NEWNET = 0x40000000
# Initial namespaces have fixed inode numbers (include/linux/proc_ns.h): PROC_PID_INIT_INO.
HOST_PID_NAMESPACE_INODE = 0xEFFFFFFC
CAP_SYS_ADMIN = 21
# Making a socket takes microseconds; past this the thread is stuck, and the probe fails
# rather than the event loop waiting on.
_MAKE_TIMEOUT = 5.0


class NamespaceError(OSError):
    """A container's network namespace cannot be opened or entered."""


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise NamespaceError(code, f"setns: {os.strerror(code)}")


def entry_denied(proc: Path = Path("/proc")) -> str | None:
    """Why this process cannot enter containers' network namespaces, or None when it can."""
    try:
        status = (proc / "self" / "status").read_text()
        pid_namespace = (proc / "self" / "ns" / "pid").stat().st_ino
    except OSError as exc:
        return f"cannot read {proc}/self: {exc.strerror}"
    effective = next(
        (int(line.split()[1], 16) for line in status.splitlines() if line.startswith("CapEff:")), 0
    )
    if not effective >> CAP_SYS_ADMIN & 1:
        return "the agent lacks CAP_SYS_ADMIN"
    if pid_namespace != HOST_PID_NAMESPACE_INODE:
        # Docker names containers' processes by their PIDs in the host's PID namespace.
        return "the agent is not in the host's PID namespace"
    return None


class Namespace:
    """An open handle on one container's network namespace (its /proc/<pid>/ns/net).

    It keeps a few sockets made in advance, refilled by the worker thread a few at a time:
    a probe then takes one at once, and the thread wakes once for several probes instead of
    the event loop waiting on it for each.
    """

    def __init__(self, pid: int, maker: SocketMaker) -> None:
        path = f"/proc/{pid}/ns/net"
        try:
            self.fd: int | None = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise NamespaceError(exc.errno, f"{path}: {exc.strerror}") from None
        self.pid = pid
        self._maker = maker
        self.stock: dict[_Kind, deque[socket.socket]] = {}
        self.refilling: set[_Kind] = set()

    def socket(self, family: int, kind: int, proto: int) -> socket.socket:
        """A non-blocking socket made inside this namespace."""
        key = (family, kind, proto)
        stock = self.stock.get(key)
        if not stock:
            # One request for both: this socket now, then the stock filled after it.
            self.stock.setdefault(key, deque())
            self.refilling.add(key)
            return self._maker.make(self, family, kind, proto)
        sock = stock.popleft()  # only this thread takes: what it saw is still there
        self._maker.took()
        if len(stock) <= _LOW and key not in self.refilling:
            self.refilling.add(key)
            self._maker.refill(self, key)
        return sock

    def close(self) -> None:
        """Let the namespace go (the container stopped); the handle makes no socket after."""
        if self.fd is not None:
            self._maker.leave(self)  # after every refill asked before: none follows
            os.close(self.fd)
            self.fd = None
            for stock in self.stock.values():
                while stock:
                    stock.popleft().close()
                    self._maker.took()


_Kind = tuple[int, int, int]  # a socket's family, kind and protocol
# A request: the namespace, the socket's family, kind and protocol, and where to answer (None:
# no answer, fill the namespace's stock). Kind _LEAVE asks the thread to go home if it is
# inside that namespace.
_Request = tuple[Namespace, int, int, int, "Future[socket.socket | None] | None"]
_LEAVE = -1
# Sockets kept per namespace and kind, refilled once this few are left; in all at most an
# eighth of the descriptors the process may open (and 1,024), whatever the number of
# containers, so that they never crowd out the probes' own.
_STOCK = 8
_LOW = 2
_BUDGET = min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 8)


class SocketMaker:
    """One worker thread that makes sockets in whichever namespace each request names."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stocked = 0

    def make(self, namespace: Namespace, family: int, kind: int, proto: int) -> socket.socket:
        """A socket made in `namespace` now; the caller waits the few microseconds it takes."""
        if namespace.fd is None:
            raise NamespaceError(0, "the container's network namespace was closed")
        sock = self._ask(namespace, family, kind, proto)
        assert sock is not None
        return sock

    def refill(self, namespace: Namespace, key: _Kind) -> None:
        """Have the thread fill the namespace's stock of sockets of this kind."""
        if namespace.fd is not None:
            self._start()
            self._requests.put((namespace, *key, None))

    def took(self) -> None:
        """One stocked socket was taken (or closed)."""
        with self._lock:
            self._stocked -= 1

    def leave(self, namespace: Namespace) -> None:
        """Have the thread go home if it is still inside `namespace`, before its fd closes."""
        if self._thread is not None:
            self._ask(namespace, 0, _LEAVE, 0)

    def _ask(
        self, namespace: Namespace, family: int, kind: int, proto: int
    ) -> socket.socket | None:
        self._start()
        answer: Future[socket.socket | None] = Future()
        self._requests.put((namespace, family, kind, proto, answer))
        try:
            return answer.result(_MAKE_TIMEOUT)
        except TimeoutError:
            raise NamespaceError(0, "the namespace thread did not answer") from None

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
                self._thread = threading.Thread(
                    target=self._serve, args=(home,), name="netns-sockets", daemon=True
                )
                self._thread.start()

    def _serve(self, home: int) -> None:
        inside: Namespace | None = None  # a reference, so that no later handle looks the same
        while True:
            namespace, family, kind, proto, answer = self._requests.get()
            try:
                if kind == _LEAVE:
                    if inside is namespace:
                        _setns(home)
                        inside = None
                    if answer is not None:
                        answer.set_result(None)
                    continue
                if inside is not namespace:
                    if namespace.fd is None:
                        raise NamespaceError(0, "the container's network namespace was closed")
                    _setns(namespace.fd)
                    inside = namespace
                if answer is not None:
                    sock = socket.socket(family, kind, proto)
                    sock.setblocking(False)
                    answer.set_result(sock)
                    answer = None  # answered: what follows only fills the stock
                if (family, kind, proto) in namespace.stock:
                    self._fill(namespace, (family, kind, proto))
            except Exception as exc:  # the thread must outlive any failure, and answer it
                namespace.refilling.discard((family, kind, proto))
                if answer is not None:
                    answer.set_exception(exc)

    def _fill(self, namespace: Namespace, key: _Kind) -> None:
        stock = namespace.stock[key]
        try:
            while len(stock) < _STOCK:
                with self._lock:
                    if self._stocked >= _BUDGET:
                        return
                    self._stocked += 1
                try:
                    sock = socket.socket(*key)
                except OSError:
                    with self._lock:
                        self._stocked -= 1
                    raise
                sock.setblocking(False)
                stock.append(sock)
        finally:
            namespace.refilling.discard(key)
