"""A collection's metadata as mongodump writes it (``<coll>.metadata.json``, and the same text in
an archive's prelude): canonical Extended JSON with ``options``, ``indexes`` (always a list),
``uuid`` (lower-case hex, no dashes), ``collectionName`` and ``type`` ("view", "timeseries";
left out for a plain collection)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bson import json_util
from bson.binary import Binary
from bson.json_util import JSONMode, JSONOptions

CANONICAL = JSONOptions(json_mode=JSONMode.CANONICAL)


class MetadataError(ValueError):
    pass


@dataclass
class CollectionMetadata:
    name: str
    options: dict = field(default_factory=dict)
    indexes: list = field(default_factory=list)
    uuid: str = ""
    type: str = ""

    def to_json(self) -> str:
        doc: dict = {}
        if self.options:
            doc["options"] = self.options
        doc["indexes"] = self.indexes
        if self.uuid:
            doc["uuid"] = self.uuid
        doc["collectionName"] = self.name
        if self.type and self.type != "collection":
            doc["type"] = self.type
        return json_util.dumps(doc, json_options=CANONICAL, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, name: str, where: str) -> CollectionMetadata:
        """``name``: the collection as the file or prelude names it (used when the JSON has no
        collectionName); ``where``: what the error names."""
        if not text:
            return cls(name=name)
        try:
            doc = json_util.loads(text)
        except (ValueError, TypeError) as exc:
            raise MetadataError(f"invalid metadata for {where}: {exc}") from None
        if not isinstance(doc, dict):
            raise MetadataError(f"invalid metadata for {where}: not a JSON object")
        indexes = doc.get("indexes") or []
        options = doc.get("options") or {}
        if not isinstance(indexes, list) or not all(isinstance(i, dict) for i in indexes):
            raise MetadataError(f"invalid metadata for {where}: 'indexes' is not a list of objects")
        if not isinstance(options, dict):
            raise MetadataError(f"invalid metadata for {where}: 'options' is not an object")
        return cls(
            name=str(doc.get("collectionName") or name),
            options=dict(options),
            indexes=[dict(i) for i in indexes],
            uuid=str(doc.get("uuid") or ""),
            type=str(doc.get("type") or ""),
        )


def from_listing(entry: dict, indexes: list[dict]) -> CollectionMetadata:
    """Metadata from a listCollections entry and the collection's listIndexes."""
    uuid = (entry.get("info") or {}).get("uuid")
    if isinstance(uuid, (bytes, Binary)):
        hexed = bytes(uuid).hex()
    else:
        hexed = getattr(uuid, "hex", "") or ""  # a uuid.UUID with a uuidRepresentation set
    return CollectionMetadata(
        name=entry["name"],
        options=dict(entry.get("options") or {}),
        indexes=[dict(i) for i in indexes],
        uuid=hexed,
        type=entry.get("type", "collection"),
    )
