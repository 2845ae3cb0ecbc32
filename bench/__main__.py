"""`make bench`: run every benchmark module (bench/*.py with a run() function) and print figures.

`python -m bench NAME ...` runs only the named modules.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

from bench import Figure


def main(names: list[str]) -> int:
    """Run the benchmarks; return 1 when one of them failed to run."""
    modules = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_")
    )
    failed = 0
    for name in names or modules:
        module = importlib.import_module(f"bench.{name}")
        if not names and not hasattr(module, "run"):
            continue  # a helper the benchmarks share (storage_support), not a benchmark
        print(f"== {name}: {(module.__doc__ or '').strip().splitlines()[0]}", flush=True)
        started = time.monotonic()
        try:
            figures: list[Figure] = module.run()
        except Exception as exc:
            print(f"   FAILED: {type(exc).__name__}: {exc}", flush=True)
            failed += 1
            continue
        for figure in figures:
            print(f"   {figure.line()}", flush=True)
        print(f"   ({time.monotonic() - started:.1f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
