"""``python -m crmsync_pipedrive.emulator``: see ``serve.py``."""

from crmsync_pipedrive.emulator.serve import main

raise SystemExit(main())
