"""The dockping program: the command line, and what starts each service and `up`."""
