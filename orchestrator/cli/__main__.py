"""``python -m orchestrator.cli`` = the ``tritone`` console script."""

import sys

from orchestrator.cli import main

sys.exit(main())
