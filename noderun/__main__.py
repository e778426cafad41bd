"""``python -m noderun serve`` is ``noderun serve``."""

import sys

from noderun.server.cli import main

sys.exit(main())
