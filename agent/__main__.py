"""``python -m posagent``."""

import sys

from posagent.cli import main

sys.exit(main())
