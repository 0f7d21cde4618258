"""`python -m wap.cli ...`: `wap ...` without the console script."""

import sys

from wap.cli import main

sys.exit(main())
