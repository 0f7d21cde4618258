"""The query engine: mongomock 4.3, with the few adaptations the double needs.

mongomock orders values by BSON type for comparisons and sorts but does not know Timestamp,
MinKey or MaxKey; oplog queries (``{ts: {$gt: Timestamp(...)}}``) need Timestamp. Their places in
BSON's comparison order are added here, once, at import.
Source: https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/
"""

from __future__ import annotations

import mongomock
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.timestamp import Timestamp
from mongomock import filtering

_mongomock_compare_type = filtering._get_compare_type


def _compare_type(value: object) -> int:
    if isinstance(value, MinKey):
        return -1
    if isinstance(value, Timestamp):
        return 47  # after Date (45), before regular expressions (50)
    if isinstance(value, MaxKey):
        return 127
    return _mongomock_compare_type(value)


filtering._get_compare_type = _compare_type

MongoClient = mongomock.MongoClient
DuplicateKeyError = mongomock.DuplicateKeyError
OperationFailure = mongomock.OperationFailure
