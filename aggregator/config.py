"""Load and validate ``config.yaml``.

The file is checked against a typed schema on load; any wrong key, type or value becomes one
:class:`ConfigError` line naming the file and the key. Secrets never live in the file: the
environment overrides the database and SMTP settings (``AGGREGATOR_DATABASE_URL``,
``AGGREGATOR_SMTP_URL``), and ``AGGREGATOR_CONFIG`` names the file itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs, quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .domain import AGGREGATOR_SOURCE_TYPES, Level, SourceType
from .errors import ConfigError

DEFAULT_CONFIG = "config.yaml"
ENV_CONFIG = "AGGREGATOR_CONFIG"
ENV_DATABASE_URL = "AGGREGATOR_DATABASE_URL"
ENV_SMTP_URL = "AGGREGATOR_SMTP_URL"

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration_s(value: Any) -> float:
    """Parse ``90s``, ``15m``, ``24h``, ``7d``, ``1h30m`` (or a bare number of seconds)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '15m' or '24h'")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as '15m' or '24h'")
    text = value.strip().lower().replace(" ", "")
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_S[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{value!r} is not a duration; use e.g. '30s', '15m', '24h', '7d'")
    return total


Duration = Annotated[float, BeforeValidator(parse_duration_s)]
# A timeout, a poll interval, a tick: zero would fail at its first use, not at load
PositiveDuration = Annotated[float, BeforeValidator(parse_duration_s), Field(gt=0)]


# All of a string must be a size: ByteSize alone reads up to the first odd character
# ("10,000" as 10 bytes, "1.5.3MB" as 1) and takes a bool as 0 or 1.
_SIZE_RE = re.compile(r"\s*\d*\.?\d+\s*[a-z]*\s*", re.IGNORECASE)


def _whole_size(value: Any) -> Any:
    if isinstance(value, bool) or (isinstance(value, str) and not _SIZE_RE.fullmatch(value)):
        raise ValueError(f"{value!r} is not a size; use e.g. '10MB' or a number of bytes")
    return value


# A number of bytes, or pydantic's spellings: kB, MB, GB... are powers of ten, KiB, MiB,
# GiB... powers of two (README, "Configuration"). Checked here once; its users take an int.
Size = Annotated[ByteSize, BeforeValidator(_whole_size), Field(ge=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Strict):
    url: str = "sqlite:///newsdedup.sqlite"


class PollingConfig(_Strict):
    min_interval: Duration = 300.0
    max_interval: Duration = 86400.0
    aggregator_min_interval: PositiveDuration = 900.0  # Google News / Bing News floor
    # a feed without publishing history yet (clamped to [min_interval, max_interval])
    default_interval: PositiveDuration = 3600.0
    connect_timeout: PositiveDuration = 10.0
    read_timeout: PositiveDuration = 30.0
    total_timeout: PositiveDuration = 60.0
    max_response_size: Size = 10_000_000
    max_redirects: int = Field(default=5, ge=0, le=20)
    workers: int = Field(default=4, ge=1, le=64)
    per_host_limit: int = Field(default=2, ge=1, le=16)
    user_agent: str | None = None
    tick: PositiveDuration = 30.0  # how often the daemon asks the database which feeds are due
    # Configured feeds (and comment feeds on their own scheme, host and port) may reach
    # loopback/private addresses; URLs found in feed content never may.
    allow_private_addresses: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> PollingConfig:
        if self.min_interval <= 0:
            raise ValueError("min_interval must be positive")
        if self.min_interval > self.max_interval:
            raise ValueError("min_interval must not exceed max_interval")
        return self


class SourceConfig(_Strict):
    name: str = Field(min_length=1, max_length=200)
    type: SourceType
    url: str | None = None
    query: str | None = None
    language: str | None = None
    country: str | None = None
    market: str | None = None
    comments: bool = False
    comments_max_age: Duration = 7 * 86400.0
    comments_interval: PositiveDuration = 6 * 3600.0
    min_interval: PositiveDuration | None = None
    max_interval: PositiveDuration | None = None
    priority: int = 0  # higher wins when choosing a cluster's headline source
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v

    @model_validator(mode="after")
    def _needs_target(self) -> SourceConfig:
        if self.type not in AGGREGATOR_SOURCE_TYPES and not self.url:
            raise ValueError(f"a {self.type} source needs 'url'")
        if self.type in AGGREGATOR_SOURCE_TYPES and not (self.url or self.query):
            raise ValueError(f"a {self.type} source needs 'query' (or a full 'url')")
        if self.comments and self.type != "wordpress":
            raise ValueError("'comments' applies only to wordpress sources")
        return self

    def feed_url(self) -> str:
        """The URL actually polled: given, or built from query/language/country/market."""
        if self.url:
            return self.url
        q = quote(self.query or "", safe="")
        if self.type == "google_news":
            lang = (self.language or "en").strip()
            country = (self.country or "US").strip().upper()
            return (
                f"https://news.google.com/rss/search?q={q}&hl={lang}&gl={country}"
                f"&ceid={country}:{lang.split('-')[0]}"
            )
        market = (self.market or "en-US").strip()
        return f"https://www.bing.com/news/search?q={q}&format=rss&mkt={market}"


class DedupConfig(_Strict):
    num_perm: int = Field(default=128, ge=16, le=1024)
    duplicate_threshold: float = Field(default=0.6, gt=0, le=1)
    story_threshold: float = Field(default=0.3, gt=0, le=1)
    thread_threshold: float = Field(default=0.18, gt=0, le=1)
    duplicate_window: Duration = 14 * 86400.0
    story_window: Duration = 2 * 86400.0
    thread_window: Duration = 21 * 86400.0
    # finer figures (README, "Clustering"); the defaults are those the corpora were tuned on
    dup_lsh_threshold: float = Field(default=0.3, gt=0, le=1)
    story_short_threshold: float = Field(default=0.5, gt=0, le=1)
    short_terms: int = Field(default=25, ge=1, le=1000)
    story_top_terms: int = Field(default=30, ge=1, le=1000)
    lead_tokens: int = Field(default=60, ge=1, le=10000)
    max_candidates: int = Field(default=50, ge=1, le=100_000)
    story_postings: int = Field(default=32, ge=1, le=1_000_000)
    dup_postings: int = Field(default=32, ge=1, le=1_000_000)
    wire_title_terms: int = Field(default=5, ge=1, le=100)
    wire_window: Duration = 86400.0
    story_bridges: int = Field(default=2, ge=1, le=100)
    cross_anchors: int = Field(default=3, ge=1, le=100)
    cross_postings: int = Field(default=200, ge=1, le=1_000_000)
    cross_weight: float = Field(default=2.0, ge=0, le=100)


DIGEST_LANGUAGES = ("de", "en")  # render.DATE_NAMES has their month and day names


class DigestConfig(_Strict):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    schedule: str
    timezone: str = "UTC"
    recipients: list[str] = Field(min_length=1)
    subject: str | None = None
    level: Level = "story"
    max_entries: int = Field(default=50, ge=1, le=1000)
    sources: list[str] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    send_empty: bool = False
    list_unsubscribe: str | None = None
    language: str = "en"  # dates and month names in the mail: en | de

    @field_validator("language")
    @classmethod
    def _language(cls, v: str) -> str:
        if v not in DIGEST_LANGUAGES:
            known = ", ".join(DIGEST_LANGUAGES)
            raise ValueError(f"unknown digest language {v!r} (supported: {known})")
        return v

    @field_validator("schedule")
    @classmethod
    def _cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"{v!r} is not a 5-field cron expression ({exc})") from None
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("recipients")
    @classmethod
    def _emails(cls, v: list[str]) -> list[str]:
        for addr in v:
            if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", addr):
                raise ValueError(f"{addr!r} is not an email address")
        return v


class SmtpConfig(_Strict):
    host: str = "localhost"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: Literal["none", "starttls", "implicit"] = "none"
    sender: str = "newsdedup@localhost"
    timeout: PositiveDuration = 30.0


class HttpConfig(_Strict):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests)
    base_url: str | None = None  # public URL of these pages, for links in exported feeds
    feed_limit: int = Field(default=100, ge=1, le=10000)  # entries in /feed.atom, /feed.json

    @field_validator("base_url")
    @classmethod
    def _http_base(cls, v: str | None) -> str | None:
        if v is not None and urlsplit(v).scheme not in ("http", "https"):
            raise ValueError(f"{v!r} is not an http(s) URL")
        return v.rstrip("/") if v else v


class RetentionConfig(_Strict):
    """How long the daemon keeps poll history, items and sent digests (None: forever), and how
    it prunes: every ``interval``, ``batch`` rows per transaction, at most ``max_run_time``
    per run."""

    poll_log: Duration | None = 30 * 86400.0
    items: Duration | None = 365 * 86400.0
    digests: Duration | None = 90 * 86400.0
    interval: Duration = 3600.0
    batch: int = Field(default=1000, ge=1, le=100_000)
    max_run_time: Duration = 60.0

    @model_validator(mode="after")
    def _positive(self) -> RetentionConfig:
        for name in ("poll_log", "items", "digests", "interval", "max_run_time"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive (or null to keep forever)")
        return self


class Config(_Strict):
    database: DatabaseConfig = DatabaseConfig()
    polling: PollingConfig = PollingConfig()
    sources: list[SourceConfig] = Field(default_factory=list)
    dedup: DedupConfig = DedupConfig()
    digests: list[DigestConfig] = Field(default_factory=list)
    smtp: SmtpConfig = SmtpConfig()
    http: HttpConfig = HttpConfig()
    retention: RetentionConfig = RetentionConfig()
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for kind, names in (
            ("source", [s.name for s in self.sources]),
            ("digest", [d.name for d in self.digests]),
        ):
            seen: set[str] = set()
            for n in names:
                if n in seen:
                    raise ValueError(f"duplicate {kind} name {n!r}")
                seen.add(n)
        for src in self.sources:  # its own bounds, or the polling section's
            low = src.min_interval or self.polling.min_interval
            high = src.max_interval or self.polling.max_interval
            if low > high:
                raise ValueError(
                    f"source {src.name!r}: min_interval ({low:g} s) must not exceed "
                    f"max_interval ({high:g} s)"
                )
        d, items = self.dedup, self.retention.items
        longest = max(d.duplicate_window, d.story_window, d.thread_window)
        if items is not None and items < longest:
            raise ValueError(
                f"retention.items ({items:g} s) must not be shorter than the longest dedup "
                f"window ({longest:g} s): clustering still reads items that young"
            )
        # digests[].sources may name OPML-imported sources too, which only the database
        # knows: they are checked when a digest is built (store.repo.check_digest_sources)
        return self

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"no source named {name!r} in {self.path}")

    def digest(self, name: str) -> DigestConfig:
        for d in self.digests:
            if d.name == name:
                return d
        names = ", ".join(d.name for d in self.digests) or "none configured"
        raise ConfigError(f"no digest named {name!r} in {self.path} (known: {names})")


def parse_smtp_url(url: str) -> dict[str, Any]:
    """``smtp://user:pass@host:port`` (``smtps://`` implicit TLS, ``?starttls=true``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError("scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise ValueError("missing host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("invalid port") from None
    query = {k.lower(): v[-1].lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"unknown parameter {sorted(unknown)[0]!r}")
    starttls = query.get("starttls", "false")
    if starttls not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("starttls must be true or false")
    tls = (
        "implicit"
        if parts.scheme == "smtps"
        else ("starttls" if starttls in ("true", "1", "yes") else "none")
    )
    out: dict[str, Any] = {
        "host": parts.hostname,
        "port": port or (465 if tls == "implicit" else 587 if tls == "starttls" else 25),
        "tls": tls,
    }
    if parts.username is not None:
        out["username"] = unquote(parts.username)
    if parts.password is not None:
        out["password"] = unquote(parts.password)
    return out


def resolve_database_url(url: str, base_dir: Path) -> str:
    """Make SQLite paths relative to the config file; name the psycopg driver for Postgres."""
    if url.startswith(("postgres://", "postgresql://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        rest = url[len("sqlite:///") :]
        if rest and not rest.startswith(":memory:") and not rest.startswith("file:"):
            path, sep, query = rest.partition("?")
            return f"sqlite:///{(base_dir / path).resolve()}{sep}{query}"
    return url


def config_path(explicit: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path:
    return Path(explicit or env.get(ENV_CONFIG) or DEFAULT_CONFIG)


def _format_loc(loc: tuple[Any, ...], raw: Any) -> str:
    out, node = "", raw
    for part in loc:
        if isinstance(part, int):
            name = (
                node[part].get("name")
                if isinstance(node, list) and part < len(node) and isinstance(node[part], dict)
                else None
            )
            out += f"[{part}]" + (f"({name})" if name else "")
        else:
            out += f".{part}" if out else str(part)
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    return out or "(top level)"


def _format_validation(err: ValidationError, raw: Any, where: str) -> str:
    msgs = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif e["type"] == "literal_error":
            msg = msg.replace("Input should be", "must be")
        msgs.append(f"{_format_loc(loc, raw)}: {msg}")
    more = f"; and {len(msgs) - 3} more" if len(msgs) > 3 else ""
    return f"{where}: {'; '.join(msgs[:3])}{more}"


def load_config(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Read, validate and apply environment overrides. Raises ConfigError with one line."""
    env = os.environ if env is None else env
    cfg_path = config_path(path, env)
    try:
        text = cfg_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {cfg_path} (pass --config PATH or set {ENV_CONFIG})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {cfg_path}: {exc}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{cfg_path}:{where}: {problem}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{cfg_path}: the top level must be a mapping of sections")
    data = dict(raw)
    if env.get(ENV_DATABASE_URL):
        data["database"] = {**(data.get("database") or {}), "url": env[ENV_DATABASE_URL]}
    if env.get(ENV_SMTP_URL):
        try:
            smtp = parse_smtp_url(env[ENV_SMTP_URL])
        except ValueError as exc:
            raise ConfigError(f"{ENV_SMTP_URL}: {exc}") from None
        data["smtp"] = {**(data.get("smtp") or {}), **smtp}
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, data, str(cfg_path))) from None
    base_dir = cfg_path.resolve().parent
    db = cfg.database.model_copy(update={"url": resolve_database_url(cfg.database.url, base_dir)})
    return cfg.model_copy(update={"database": db, "path": cfg_path.resolve()})
