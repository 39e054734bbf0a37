"""Render a :class:`DigestView` to a subject, an HTML part and a plain-text part, and build
the MIME message. Deterministic: the same inputs give byte-identical output (the multipart
boundary is derived from the content, not random), so a stored message and its retry are the
same mail.

Everything from feeds is untrusted. The HTML template is autoescaped, every printed value goes
through :func:`clean_text` (no control characters, bidi overrides or lone surrogates), and
only absolute http(s) URLs ever become links (:func:`safe_link`).
"""

from __future__ import annotations

import hashlib
import logging
import re
import textwrap
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .digest_view import DigestView

log = logging.getLogger(__name__)

TEXT_WIDTH = 78
ESTIMATED = "≈"  # before a time the feed did not give (its fetch time stands in)

# Month and weekday names per digest language (config.DIGEST_LANGUAGES): a table, so dates
# never depend on the host's locale.
DATE_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
    ),
    "de": (
        (
            "Jan.",
            "Feb.",
            "März",
            "Apr.",
            "Mai",
            "Juni",
            "Juli",
            "Aug.",
            "Sep.",
            "Okt.",
            "Nov.",
            "Dez.",
        ),
        ("Mo.", "Di.", "Mi.", "Do.", "Fr.", "Sa.", "So."),
    ),
}

# C0/C1 controls except tab and newline, bidi embeddings/overrides/isolates, lone surrogates.
_UNSAFE_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean_text(value: Any) -> Any:
    """Drop characters that have no business in a mail (applied to every ``{{ }}`` output)."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return _UNSAFE_CHARS.sub("", value.replace("\r\n", "\n").replace("\r", "\n"))
    return value


def direct_link(url: str | None) -> str | None:
    """A safe link that is the article itself: Google News redirects are long and opaque, so
    the plain-text part names those outlets without their URL (the HTML part links them)."""
    link = safe_link(url)
    if link and urlsplit(link).hostname == "news.google.com":
        return None
    return link


def safe_link(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL that is safe to put in an ``href``, else None.

    Rejected: any other scheme (``javascript:``, ``data:``, ``mailto:``, relative links),
    URLs with whitespace, double quotes, backticks, angle brackets, backslashes or control characters, and
    URLs carrying credentials (``https://user@host``, a classic phishing disguise).
    """
    if not isinstance(url, str) or not url or len(url) > 4096:
        return None
    if any(ord(c) <= 32 or ord(c) == 127 or c in '"<>`\\' for c in url):
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    if "@" in parts.netloc:
        return None
    return url


def _wrap(value: str, width: int = TEXT_WIDTH, indent: str = "", first: str | None = None) -> str:
    """Collapse whitespace and wrap; never breaks words or URLs (long ones overflow)."""
    words = " ".join(str(clean_text(value)).split())
    if not words:
        return ""
    return "\n".join(
        textwrap.wrap(
            words,
            width=width,
            initial_indent=indent if first is None else first,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )


def _is_html(name: str | None) -> bool:
    return bool(name) and str(name).endswith((".html.j2", ".html"))


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("aggregator", "templates"),
        autoescape=_is_html,  # the .txt template must not be HTML-escaped
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=clean_text,
    )
    env.filters["safe_link"] = safe_link
    env.filters["direct_link"] = direct_link
    env.filters["wrap"] = _wrap
    return env


_ENV = _env()


def _aware(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def format_date(at: datetime, timezone: str, language: str) -> str:
    """``7 Dec 2026`` / ``7. Dez. 2026``: the day in the digest's zone and language."""
    local = _aware(at).astimezone(ZoneInfo(timezone))
    month = DATE_NAMES[language][0][local.month - 1]
    return (
        f"{local.day}. {month} {local.year}"
        if language == "de"
        else (f"{local.day} {month} {local.year}")
    )


def format_time(
    at: datetime, timezone: str, language: str, *, estimated: bool = False, weekday: bool = False
) -> str:
    """``7 Dec 2026, 07:45`` (``Mon 7 Dec …`` with ``weekday``); ``≈`` marks an estimate."""
    local = _aware(at).astimezone(ZoneInfo(timezone))
    text = f"{format_date(at, timezone, language)}, {local:%H:%M}"
    if weekday:
        text = f"{DATE_NAMES[language][1][local.weekday()]} {text}"
    return f"{ESTIMATED} {text}" if estimated else text


def render_digest(view: DigestView) -> tuple[str, str, str]:
    """``(subject, html, text)`` for one digest. Pure: no clock, no randomness, no I/O."""

    def local(at: datetime, estimated: bool = False) -> str:
        return format_time(at, view.timezone, view.language, estimated=estimated)

    estimated = any(
        (e.headline_at_estimated if e.headline_at else e.published_at_estimated)
        or any(o.published_at_estimated for o in e.outlets)
        for e in view.entries
    )

    subject = " ".join(str(clean_text(view.subject)).split()) or f"newsdedup {view.name}"
    context = {
        "view": view,
        "subject": subject,
        "local": local,
        "since": (
            format_time(view.period_start_at, view.timezone, view.language, weekday=True)
            if view.period_start_at
            else None
        ),
        "until": format_time(view.period_end_at, view.timezone, view.language, weekday=True),
        "estimated": estimated,
        "mark": ESTIMATED,
        "tzname": view.timezone,
        "unsubscribe": _unsubscribe_target(view.unsubscribe),
        "width": TEXT_WIDTH,
    }
    html = _ENV.get_template("digest.html.j2").render(context)
    text = _ENV.get_template("digest.txt.j2").render(context)
    return subject, html, text


def _unsubscribe_target(value: str | None, *, warn: bool = False) -> str | None:
    """The List-Unsubscribe URI when it is an http(s) or mailto: URI, else None (logged)."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if safe_link(value) or (
        value.lower().startswith("mailto:") and not _UNSAFE_CHARS.search(value) and " " not in value
    ):
        return value
    if warn:
        log.warning("ignoring list_unsubscribe %r: not an http(s) or mailto: URI", value)
    return None


def build_message(
    view: DigestView,
    *,
    subject: str,
    html: str,
    text: str,
    sender: str,
    recipients: list[str],
    message_id: str,
    date: datetime,
    list_unsubscribe: str | None,
) -> bytes:
    """The complete RFC 5322 message (CRLF line ends) as bytes, ready for ``sendmail``.

    multipart/alternative: text/plain, then text/html, both UTF-8 in quoted-printable (7-bit
    clean, so no relay needs 8BITMIME). Headers with non-ASCII text (subject, display names)
    are RFC 2047 encoded by :mod:`email`. ``List-Unsubscribe`` only when configured, plus
    ``List-Unsubscribe-Post`` (RFC 8058 one-click) when it is an https URL.
    """
    msg = EmailMessage(policy=SMTP)
    msg["Subject"] = " ".join(subject.split())
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(_aware(date))
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    unsubscribe = _unsubscribe_target(list_unsubscribe, warn=True)
    if unsubscribe:
        msg["List-Unsubscribe"] = f"<{unsubscribe}>"
        if unsubscribe.lower().startswith("https://"):
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    # A content-derived boundary instead of email's random one. "=_" can never occur in a
    # quoted-printable body ("=" is always followed by hex digits or a line break there).
    digest = hashlib.sha256(
        "\0".join((subject, sender, *recipients, message_id, text, html)).encode(
            "utf-8", "surrogatepass"
        )
    ).hexdigest()
    msg.set_boundary(f"=_newsdedup_{digest[:32]}")
    return msg.as_bytes()


def render_template(name: str, **context: Any) -> str:
    """Render one of the package templates with the digest's escaping and link rules
    (used for feed entry content and the web pages)."""
    return _ENV.get_template(name).render(**context)
