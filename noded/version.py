"""The version of noded, in one place."""

__version__ = "0.1.0"
