"""Per-collection content hashes that do not depend on document order.

A dump reads a collection in natural order and a restore inserts it in parallel batches, so the
order differs; the hash is the sum (mod 2**64) of each document's 64-bit BLAKE2b digest over its
raw BSON, the same whichever order the documents come in. :func:`collection_hash` computes it
from a live collection, so a restore can be checked against a dump's summary.
"""

from __future__ import annotations

from hashlib import blake2b

from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument

RAW = CodecOptions(document_class=RawBSONDocument)
_MASK = (1 << 64) - 1


class ContentHash:
    def __init__(self) -> None:
        self.total = 0
        self.count = 0
        self.bytes = 0

    def update(self, docs: list[bytes]) -> None:
        total = self.total
        for doc in docs:
            total += int.from_bytes(blake2b(doc, digest_size=8).digest(), "little")
            self.bytes += len(doc)
        self.total = total & _MASK
        self.count += len(docs)

    def hexdigest(self) -> str:
        return f"{self.total:016x}"


def collection_hash(collection) -> dict:
    """``{count, bytes, hash}`` of a pymongo collection's documents as the server holds them."""
    digest = ContentHash()
    batch: list[bytes] = []
    for doc in collection.with_options(codec_options=RAW).find({}):
        batch.append(doc.raw)
        if len(batch) >= 1000:
            digest.update(batch)
            batch = []
    digest.update(batch)
    return {"count": digest.count, "bytes": digest.bytes, "hash": digest.hexdigest()}
