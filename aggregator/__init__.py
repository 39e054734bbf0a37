"""newsdedup: a deduplicating news RSS aggregator."""

__version__ = "0.1.0"
