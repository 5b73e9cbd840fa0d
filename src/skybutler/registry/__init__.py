"""The registry: SQL tables of dimensions, dataset types, datasets and collections.

SQLAlchemy Core only, one code path for SQLite and PostgreSQL.  No other part of
skybutler issues SQL (query/ compiles expressions against this schema).
"""

from .registry import Registry

__all__ = ["Registry"]
