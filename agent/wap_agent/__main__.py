"""``python -m wap_agent``: the same as the ``wap-agent`` command."""

import sys

from wap_agent.cli import main

sys.exit(main())
