"""WAP host agent: runs next to mongod; imports nothing from the platform."""

__version__ = "0.1.0"
