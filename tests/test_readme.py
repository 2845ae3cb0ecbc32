"""The README's settings table is generated from the settings types, so it cannot drift."""

from __future__ import annotations

from pathlib import Path

from launcher.cli import settings_table

README = Path(__file__).parent.parent / "README.md"


def test_the_readme_lists_every_setting_as_the_code_declares_it() -> None:
    """Regenerate with `dockping settings --markdown` between the settings markers."""
    text = README.read_text(encoding="utf-8")
    table = text.split("<!-- settings:start -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert settings_table() == table
