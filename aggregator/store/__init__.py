"""Persistence: models, schema management and queries."""

from .db import Store, check_schema, head_revision, make_engine, open_store, upgrade

__all__ = [
    "Store",
    "check_schema",
    "head_revision",
    "make_engine",
    "open_store",
    "upgrade",
]
