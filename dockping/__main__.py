"""python -m dockping"""

from launcher.cli import main

raise SystemExit(main())
