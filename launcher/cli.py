"""The dockping command: up, agent, ingest, query, migrate, rebuild, settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dockping import __version__, logs
from dockping.settings import Settings, SettingsError, describe_all, load

EXIT_BAD_SETTINGS = 2
DEFAULT_SETTINGS = Path("settings.toml")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dockping",
        description="Reachability monitor for Docker containers.",
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="settings file (default: ./settings.toml when it exists)",
    )
    parser.add_argument("--version", action="version", version=f"dockping {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="everything in one go: database, ingest, query, agent")
    agent = commands.add_parser("agent", help="discover containers, probe them, ship the results")
    agent.add_argument(
        "--check",
        action="store_true",
        help="exit 0 when the running agent reaches Docker and ingest (a healthcheck), else 1",
    )
    commands.add_parser("ingest", help="serve POST /api/v1/events")
    commands.add_parser("query", help="serve /addresses, /api/v1 and /metrics")
    commands.add_parser("notify", help="send notifications of status changes; serve silences")
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("rebuild", help="rebuild every projection from the events")
    listing = commands.add_parser(
        "settings", help="print every setting with its variable and default"
    )
    listing.add_argument("--markdown", action="store_true", help="as a Markdown table")
    return parser


def _settings(path: Path | None) -> Settings:
    if path is None and DEFAULT_SETTINGS.exists():
        path = DEFAULT_SETTINGS
    return load(path)


def settings_table() -> str:
    """Every setting as a Markdown table, as the README shows it."""
    lines = ["| key | environment variable | default | meaning |", "|---|---|---|---|"]
    for key, env, default, doc in describe_all():
        lines.append(f"| `{key}` | `{env}` | `{default}` | {doc} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the dockping command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args.settings)
    except SettingsError as exc:
        print(f"dockping: bad settings: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    logs.configure(settings.log, args.command)
    from launcher import services

    if args.command == "agent" and args.check:
        from agent import health

        trouble = health.problem(settings.data_path)
        if trouble is not None:
            print(f"dockping agent: unhealthy: {trouble}", file=sys.stderr)
            return 1
        return 0
    if args.command == "settings":
        print(
            settings_table()
            if args.markdown
            else "\n".join(
                f"{key:30} {env:38} {default:12} {doc}" for key, env, default, doc in describe_all()
            )
        )
        return 0
    return services.run(args.command, settings, args.settings)
