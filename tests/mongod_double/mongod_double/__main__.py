"""``python -m mongod_double [options]`` runs mongod (mongos with MONGOD_DOUBLE_PROGRAM=mongos)."""

import os
import sys

from mongod_double.main import main

if __name__ == "__main__":
    program = os.environ.get("MONGOD_DOUBLE_PROGRAM") or (
        "mongos" if os.path.basename(sys.argv[0]) == "mongos" else "mongod"
    )
    sys.exit(main(program=program))
