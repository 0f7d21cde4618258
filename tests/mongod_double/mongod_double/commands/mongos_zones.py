"""mongos's zones: addShardToZone, removeShardFromZone, updateZoneKeyRange.

A shard's zones are the ``tags`` array of its ``config.shards`` document; a zone's ranges are
``config.tags`` documents ``{_id, ns, min, max, tag}``, one per range, ``min`` inclusive and
``max`` exclusive. As MongoDB 7.0 documents and its config server does it:

- addShardToZone adds the zone to the shard's ``tags`` (once), ShardNotFound for no such shard.
- removeShardFromZone takes it off; ZoneStillInUse when the zone has ranges and this shard is
  the only one in it; ShardNotFound for no such shard. Removing a zone no shard has is no error.
- updateZoneKeyRange with a zone: the zone must be on some shard (ZoneNotFound); on a sharded
  collection the bounds must be a prefix of its shard key (ShardKeyNotFound), completed with
  MinKey to the whole key, and a hashed field's bounds NumberLong, MinKey or MaxKey
  (InvalidOptions); ``min < max``; no overlap with the collection's other ranges
  (RangeOverlapConflict). The range is then written (replacing one with the same ``min``). An
  unsharded or missing collection takes the bounds as given. With ``zone: null`` the range with
  exactly those bounds is removed, none being no error.

The double's balancer does not move chunks to their zones, and shardCollection does not create
chunks from zone ranges defined before it (MongoDB 4.0.3+): the catalogue is what these keep.
Sources (MongoDB 7.0 manual, reference/command/<name>/; reference/config-database/).
"""

from __future__ import annotations

from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId

from mongod_double import authz
from mongod_double.commands import Invocation
from mongod_double.errors import BAD_VALUE, INVALID_OPTIONS, TYPE_MISMATCH, CommandError
from mongod_double.sharding.cluster import SHARD_NOT_FOUND
from mongod_double.sharding.keys import ShardKey, compare
from mongod_double.sharding.registry import router_command

SHARD_KEY_NOT_FOUND = 61
ZONE_STILL_IN_USE = 163
ZONE_NOT_FOUND = 177
RANGE_OVERLAP_CONFLICT = 178
IDL_MISSING_FIELD = 40414

for _name, _coll in (("addShardToZone", "shards"), ("removeShardFromZone", "shards"),
                     ("updateZoneKeyRange", "tags")):  # fmt: skip
    authz.REQUIREMENTS.setdefault(_name, lambda inv, c=_coll: [(("ns", "config", c), "update")])


def _required(inv: Invocation, field: str) -> object:
    if field not in inv.body:
        raise CommandError(
            IDL_MISSING_FIELD, f"BSON field '{inv.name}.{field}' is missing but a required field"
        )
    return inv.body[field]


def _string(inv: Invocation, field: str) -> str:
    value = _required(inv, field)
    if not isinstance(value, str):
        raise CommandError(
            TYPE_MISMATCH,
            f"BSON field '{inv.name}.{field}' is the wrong type '{type(value).__name__}', "
            "expected type 'string'",
        )
    return value


@router_command("addShardToZone", "addshardtozone", admin_only=True)
def add_shard_to_zone(inv: Invocation) -> dict:
    shard, zone = _string(inv, inv.name), _string(inv, "zone")
    found = inv.server.cluster.config.shards.update_one(
        {"_id": shard}, {"$addToSet": {"tags": zone}}
    )
    if not found.matched_count:
        raise CommandError(SHARD_NOT_FOUND, f"shard {shard} does not exist")
    return {}


@router_command("removeShardFromZone", "removeshardfromzone", admin_only=True)
def remove_shard_from_zone(inv: Invocation) -> dict:
    shard, zone = _string(inv, inv.name), _string(inv, "zone")
    config = inv.server.cluster.config
    if config.shards.find_one({"_id": shard}) is None:
        raise CommandError(SHARD_NOT_FOUND, f"shard {shard} does not exist")
    others = config.shards.count_documents({"_id": {"$ne": shard}, "tags": zone})
    mine = config.shards.count_documents({"_id": shard, "tags": zone})
    if mine and not others and config.tags.find_one({"tag": zone}) is not None:
        raise CommandError(
            ZONE_STILL_IN_USE,
            "cannot remove a shard from zone if a chunk range is associated with it",
        )
    config.shards.update_one({"_id": shard}, {"$pull": {"tags": zone}})
    return {}


def _bounds(inv: Invocation) -> tuple[str, dict, dict]:
    ns = _string(inv, inv.name)
    db, dot, coll = ns.partition(".")
    if not db or not dot or not coll:
        raise CommandError(73, f"Invalid namespace specified '{ns}'")
    low, high = inv.body.get("min"), inv.body.get("max")
    for field, value in (("min", low), ("max", high)):
        if not isinstance(value, dict) or not value:
            raise CommandError(
                BAD_VALUE, f"{field} must be a non-empty document of shard key values"
            )
    assert isinstance(low, dict) and isinstance(high, dict)
    if list(low) != list(high):
        raise CommandError(BAD_VALUE, f"min: {low} and max: {high} must name the same fields")
    return ns, low, high


def _whole_key(inv: Invocation, ns: str, low: dict, high: dict) -> tuple[dict, dict]:
    """The bounds completed to the sharded collection's whole key (MinKey for the fields left
    out), checked against it; as given for a collection that is not sharded."""
    sharded = inv.server.cluster.collection(ns)
    if sharded is None:
        return low, high
    key = ShardKey.from_doc(sharded["key"])
    for name, bound in (("min", low), ("max", high)):
        if list(bound) != key.fields[: len(bound)]:
            raise CommandError(
                SHARD_KEY_NOT_FOUND,
                f"{name}: {bound} is not a prefix of the shard key {sharded['key']} of ns: {ns}",
            )
    low = {f: low.get(f, MinKey()) for f in key.fields}
    high = {f: high.get(f, MinKey()) for f in key.fields}
    hashed = key.hashed_field
    if hashed is not None:
        for bound in (low, high):
            if not isinstance(bound[hashed], (Int64, MinKey, MaxKey)):
                raise CommandError(
                    INVALID_OPTIONS,
                    f"there exists a field in the range {low} -->> {high} not of type NumberLong,"
                    f" MinKey, or MaxKey which corresponds to a hashed field in the shard key"
                    f" pattern {sharded['key']}",
                )
    return low, high


@router_command("updateZoneKeyRange", "updatezonekeyrange", admin_only=True)
def update_zone_key_range(inv: Invocation) -> dict:
    ns, low, high = _bounds(inv)
    if "zone" not in inv.body:
        raise CommandError(
            IDL_MISSING_FIELD,
            "BSON field 'updateZoneKeyRange.zone' is missing but a required field",
        )
    zone = inv.body["zone"]
    config = inv.server.cluster.config
    low, high = _whole_key(inv, ns, low, high)
    if zone is None:
        config.tags.delete_many({"ns": ns, "min": low, "max": high})
        return {}
    if not isinstance(zone, str):
        raise CommandError(TYPE_MISMATCH, "BSON field 'updateZoneKeyRange.zone' must be a string")
    if config.shards.find_one({"tags": zone}) is None:
        raise CommandError(ZONE_NOT_FOUND, f"zone {zone} does not exist")
    if compare(list(low.values()), list(high.values())) >= 0:
        raise CommandError(BAD_VALUE, f"min: {low} should be less than max: {high}")
    for other in config.tags.find({"ns": ns}):
        if (
            compare(list(low.values()), list(other["max"].values())) < 0
            and compare(list(other["min"].values()), list(high.values())) < 0
        ):
            raise CommandError(
                RANGE_OVERLAP_CONFLICT,
                f"Zone range: {low} -->> {high} on {zone} is overlapping with existing: "
                f"{other['min']} -->> {other['max']} on {other['tag']}",
            )
    config.tags.update_one(
        {"ns": ns, "min": low},
        {"$set": {"max": high, "tag": zone}, "$setOnInsert": {"_id": ObjectId()}},
        upsert=True,
    )
    return {}
