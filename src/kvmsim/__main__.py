"""``python -m kvmsim``: the same as the ``kvmsim`` command."""

import sys

from .cli import main

sys.exit(main())
