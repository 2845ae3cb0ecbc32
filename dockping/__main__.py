"""python -m dockping"""

from dockping.cli import main

raise SystemExit(main())
