"""``python -m dbbackup``: the same command line as the ``dbbackup`` script."""

import sys

from dbbackup.cli import main

sys.exit(main())
