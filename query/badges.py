"""Flat, shields-style SVG badges: a grey label and a coloured value, every text escaped."""

from __future__ import annotations

import hashlib

from markupsafe import escape

COLOURS = {
    "up": "#2e7d32",
    "degraded": "#b26a00",
    "down": "#c62828",
    "stopped": "#616161",
    "stale": "#8d6e00",
    "unknown": "#9e9e9e",
    "gone": "#9e9e9e",
}
MAX_TEXT = 40
# Widths of Verdana 11 px (shields' font) in pixels, for the characters that differ much from
# the usual 7: wide enough that no text overflows its half, close enough to look made.
_NARROW = dict.fromkeys("ijl.,:;!|'` ", 3.5) | dict.fromkeys("frt()[]-", 4.5)
_WIDE = dict.fromkeys("mwMW%", 10.5) | dict.fromkeys("ABCDGHKNOQRUVXY&", 8.0)


def text_width(text: str) -> float:
    """The drawn width of a text in Verdana 11 px, near enough."""
    return sum(_NARROW.get(c, _WIDE.get(c, 7.0)) for c in text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def svg(label: str, value: str, colour: str) -> str:
    """A badge reading `label | value`, the value on `colour`."""
    label, value = _clip(label), _clip(value)
    left = round(text_width(label) + 12)
    right = round(text_width(value) + 12)
    width = left + right
    title = escape(f"{label}: {value}")
    label_x, value_x = left * 5, (left + right / 2) * 10
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{title}"><title>{title}</title>'
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>'
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>'
        f'<g clip-path="url(#r)"><rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{escape(colour)}"/>'
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        'text-rendering="geometricPrecision" font-size="110">'
        f'<text x="{label_x:.0f}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)">'
        f"{escape(label)}</text>"
        f'<text x="{label_x:.0f}" y="140" transform="scale(.1)">{escape(label)}</text>'
        f'<text x="{value_x:.0f}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)">'
        f"{escape(value)}</text>"
        f'<text x="{value_x:.0f}" y="140" transform="scale(.1)">{escape(value)}</text></g></svg>'
    )


def status_badge(label: str, status: str | None) -> str:
    """A badge of a status; None (nothing of that name) reads a grey "unknown"."""
    word = status or "unknown"
    return svg(label, word, COLOURS.get(word, COLOURS["unknown"]))


def uptime_badge(label: str, share: float | None) -> str:
    """A badge of a 24 h uptime percentage, coloured by how good it is."""
    if share is None:
        return svg(label, "unknown", COLOURS["unknown"])
    colour = "#2e7d32" if share >= 99.9 else "#7cb342" if share >= 99 else "#b26a00"
    if share < 95:
        colour = "#c62828"
    text = "100%" if share >= 100 else f"{min(share, 99.99):.2f}%"
    return svg(label, text, colour)


def etag(body: str) -> str:
    """A strong ETag of a badge's bytes."""
    return '"' + hashlib.sha256(body.encode()).hexdigest()[:20] + '"'
