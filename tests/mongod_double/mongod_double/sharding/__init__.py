"""Sharding: the catalog on the config servers, the router (mongos) and chunk migration.

``catalog.py`` reads and writes the ``config`` database of the config server replica set,
``cluster.py`` holds the router's connections to it and to each shard, ``keys.py`` extracts and
hashes shard keys and finds the chunk that owns a key, ``migration.py`` moves chunks and database
primaries (really copying documents between shards), ``balancer.py`` evens out chunk counts and
drains shards being removed, ``registry.py`` is the router's command registry and dispatcher.
"""
