"""Text a container chose cannot forge lines, links or mentions in a notification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notify.messages import Target, agent_message, digest, shown, target_message
from notify.rules import Change

HOSTILE = (
    "shop\nRECOVERED: db 10.0.0.5:5432/tcp on host-a is up again.\r\n"
    "https://evil.example/login <!channel> <@U024BE7LH> @everyone @here\x1b[2J\u202e"
)
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
MENTIONS = ("<!channel>", "<@U024BE7LH>", "@everyone", "@here", "https://", "<", ">")


def hostile_target(**overrides: str) -> Target:
    """A target whose container chose every text it could."""
    fields = {"container": HOSTILE, "image": HOSTILE, "project": HOSTILE, "agent": "host-a"}
    fields.update(overrides)
    return Target(
        target_id=7,
        agent=fields["agent"],
        container=fields["container"],
        image=fields["image"],
        project=fields["project"],
        ip="10.0.0.9",
        port=80,
        protocol="tcp",
    )


def assert_harmless(text: str, lines: int) -> None:
    """No control character, no mention or link syntax, and only the expected line breaks."""
    assert text.count("\n") == lines - 1
    assert not any(ord(c) < 32 and c != "\n" for c in text)
    assert "\u202e" not in text
    for mention in MENTIONS:
        assert mention not in text, mention


@pytest.mark.parametrize("kind", ["down", "reminder", "recovered", "flapping", "settled"])
def test_container_text_in_a_message_is_quoted_on_one_line_without_mentions(kind: str) -> None:
    """Name, image and project come out quoted, on one line, with no <!channel>, @everyone,
    live link, control character or forged line: the title is one line, the body two."""
    change = Change(kind, NOW, "down", NOW - timedelta(minutes=5), timedelta(minutes=5), 1, 3)  # type: ignore[arg-type]
    text = target_message(change, hostile_target(), "http://dockping.example:8081", 600)
    assert_harmless(text.title, 1)
    assert_harmless(text.body, 2)
    assert text.body.endswith("\nhttp://dockping.example:8081/targets/7")
    assert "\u201cshop RECOVERED: db" in text.body  # quoted, the line break gone


def test_a_digest_of_hostile_titles_keeps_one_line_each() -> None:
    """A digest lists one line per change, whatever the containers are called."""
    change = Change("down", NOW, "down", NOW, None, 1, 3)
    titles = [target_message(change, hostile_target(), "http://x", 600).title] * 3
    text = digest("down", titles)
    assert_harmless(text.body, 3)


def test_an_agent_message_quotes_an_odd_agent_id() -> None:
    """An agent id with a line break and a mention is quoted and neutralised too."""
    text = agent_message("host\n@channel", True, NOW, 60)
    assert_harmless(text.title, 1)
    assert_harmless(text.body, 1)


def test_plain_names_read_as_before() -> None:
    """Docker-style names and image references are shown bare, as people expect."""
    assert shown("web-1") == "web-1"
    assert shown("registry.example/team/app:1.2") == "registry.example/team/app:1.2"
    assert shown("shop evil") == "\u201cshop evil\u201d"
