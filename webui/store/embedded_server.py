"""Run the embedded store (nx-27017) with its per-command INFO logging off.

nx-27017 logs every command with its documents at INFO: slow, and a log of everything stored.
Usage: python -m webui.store.embedded_server [nx-27017 options]
"""

from __future__ import annotations

import logging
import sys

from nx_27017 import nx_27017


def main() -> None:
    logging.getLogger("nx_27017").setLevel(logging.WARNING)
    sys.argv[0] = "nx-27017"
    nx_27017.main()


if __name__ == "__main__":
    main()
