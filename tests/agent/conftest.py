"""The agent's tests start mongod doubles on 127.0.0.1 with the double's own fixture."""

from tests.mongod_double.conftest import launcher  # noqa: F401 (a fixture, found by pytest)
