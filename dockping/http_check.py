"""What an HTTP(S) probe asks for and accepts, and the parsers of how users write it."""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_ACCEPT: tuple[tuple[int, int], ...] = ((200, 399),)
# An origin-form request target (RFC 9112 3.2.1): path and query in printable ASCII, so that
# nothing a container's label says can end the request line or add a header.
_PATH = re.compile(r"^/[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$")
_PATH_MAX = 1024
_STATUS = re.compile(r"^\s*([1-5]\d\d)\s*(?:-\s*([1-5]\d\d)\s*)?$")


@dataclass(frozen=True)
class HttpCheck:
    """A GET of `path`, up when its status is in `accept`; over TLS, `verify` checks the chain."""

    path: str = "/"
    accept: tuple[tuple[int, int], ...] = DEFAULT_ACCEPT
    """Accepted status codes, as inclusive ranges."""
    verify: bool = False
    """Whether an https probe verifies the certificate chain."""

    def accepts(self, status: int) -> bool:
        """Whether a response with this status code counts as up."""
        return any(low <= status <= high for low, high in self.accept)


def parse_path(text: str) -> str:
    """A request path such as "/healthz?full=1"; ValueError saying what is wrong otherwise."""
    path = text.strip()
    if not path.startswith("/"):
        raise ValueError(f"{text[:64]!r} is not a path: it must start with /")
    if len(path) > _PATH_MAX:
        raise ValueError(f"the path is longer than {_PATH_MAX} characters")
    if _PATH.match(path) is None:
        raise ValueError(
            f"{text[:64]!r} is not a path: only printable ASCII without spaces, quotes, "
            "brackets or #; write others %-encoded"
        )
    return path


def parse_statuses(text: str) -> tuple[tuple[int, int], ...]:
    """Accepted codes such as "200-399" or "200,204,300-308"; ValueError naming the bad part."""
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        match = _STATUS.match(part)
        if match is None:
            raise ValueError(
                f"{part.strip()[:32]!r} is not a status code (100-599) or a range like 200-399"
            )
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise ValueError(f"{part.strip()!r}: the range ends before it starts")
        ranges.append((low, high))
    if not ranges:
        raise ValueError("no status code given")
    return tuple(sorted(set(ranges)))
