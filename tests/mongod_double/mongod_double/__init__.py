"""A test double of MongoDB's mongod (and, later, mongos), speaking the real wire protocol."""
