"""dockping: event-driven reachability monitoring for Docker containers."""

__version__ = "0.1.0"
