"""Make ``ansible_collections.whaleal.wap`` importable from the repository's ``collections/``."""

import sys
from pathlib import Path

COLLECTIONS_ROOT = Path(__file__).resolve().parents[5]
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))
