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
    parser.add_argument("--settings", type=Path, default=None,
                        help="settings file (default: ./settings.toml when it exists)")
    parser.add_argument("--version", action="version", version=f"dockping {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("up", help="everything in one go: database, ingest, query, agent")
    commands.add_parser("agent", help="discover containers, probe them, ship the results")
    commands.add_parser("ingest", help="serve POST /api/v1/events")
    commands.add_parser("query", help="serve /addresses, /api/v1 and /metrics")
    commands.add_parser("migrate", help="apply database migrations")
    commands.add_parser("rebuild", help="rebuild every projection from the events")
    commands.add_parser("settings", help="print every setting with its variable and default")
    return parser


def _settings(path: Path | None) -> Settings:
    if path is None and DEFAULT_SETTINGS.exists():
        path = DEFAULT_SETTINGS
    return load(path)


def main(argv: list[str] | None = None) -> int:
    """Run the dockping command; return its exit code."""
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args.settings)
    except SettingsError as exc:
        print(f"dockping: bad settings: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    logs.configure(settings.log, args.command)
    from dockping import services

    if args.command == "settings":
        for key, env, default, doc in describe_all():
            print(f"{key:32} {env:40} {default:14} {doc}")
        return 0
    return services.run(args.command, settings, args.settings)
