"""The one exception tree of newsdedup.

Every error the package raises on purpose derives from :class:`AggregatorError`;
the CLI prints ``str(error)`` as one line and exits non-zero. Lower-level causes are
chained (``raise ... from exc``) so ``-v`` shows them.

    AggregatorError
    ├── ConfigError            bad config file, value or environment variable
    ├── StoreError             the database failed or is unreachable
    │   └── SchemaError        the schema is missing or not at the head revision
    ├── SourceError            something went wrong with one source; others go on
    │   ├── FetchError         HTTP / network failure (has ``retry_after_s``)
    │   │   ├── FetchTimeout
    │   │   ├── ResponseTooLarge
    │   │   ├── AddressRefused the URL leads to a non-public address
    │   │   ├── HTTPStatusError (has ``status``)
    │   │   └── SourceGone     410: the source is disabled
    │   ├── ParseError         the document is not a usable feed
    │   └── FeedCrash          any other exception while handling one feed (kind ``internal``)
    ├── DeliveryError          SMTP refused or unreachable (has ``retryable``)
    └── InputError             a bad file or argument given on the command line
"""

from __future__ import annotations


class AggregatorError(Exception):
    """Base of every error raised on purpose by newsdedup."""


class ConfigError(AggregatorError):
    pass


class StoreError(AggregatorError):
    pass


class SchemaError(StoreError):
    pass


class SourceError(AggregatorError):
    """A failure confined to one source/feed; it is recorded and the source backs off."""

    kind = "source"


class FetchError(SourceError):
    kind = "fetch"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class FetchTimeout(FetchError):
    kind = "timeout"


class ResponseTooLarge(FetchError):
    kind = "too_large"


class AddressRefused(FetchError):
    """A fetch would connect to a loopback, private or otherwise non-public address."""

    kind = "refused"


class HTTPStatusError(FetchError):
    kind = "http"

    def __init__(self, message: str, *, status: int, retry_after_s: float | None = None) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status = status


class SourceGone(HTTPStatusError):
    kind = "gone"


class ParseError(SourceError):
    kind = "parse"


class FeedCrash(SourceError):
    """An unexpected exception (a bug, an input nobody foresaw) while fetching, parsing,
    normalising or storing one feed: recorded and backed off like any source error, so one
    feed can never stop a round. The original exception is the ``__cause__``."""

    kind = "internal"


class DeliveryError(AggregatorError):
    """A digest could not be handed to the SMTP server. ``retryable``: try again later."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class InputError(AggregatorError):
    pass
