"""Hide secrets in text shown to people: output, log lines, stored error rows.

One rule for database URLs, feed URLs and free text that quotes them: a URL's userinfo
(``user:password@``, or a bare token before ``@``) becomes ``***``, and so does the value of
every ``key=value`` pair whose key names a secret (``token``, ``api_key``, ``password``, …).
It works on text, not on parsed URLs, so a URL too malformed to parse (a space or a ``/`` in
its password, a broken port or IPv6 literal) is masked too; a masked ``@`` in a path (or an
e-mail address after a malformed URL) costs readability, never a secret.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["MASK", "is_secret_key", "redact_url"]

MASK = "***"

# A key is secret when, lower-cased and without separators, it ends with one of these
# (``access_token``, ``X-Amz-Signature``, ``client_secret``, ``apiKey``, ``oauth``).
_SECRET_SUFFIXES = (
    "token",
    "key",
    "secret",
    "sig",
    "signature",
    "password",
    "passwd",
    "pwd",
    "pass",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "session",
    "sessionid",
    "jwt",
)

# "scheme://" anywhere; "scheme:" or "scheme:/" (a URL missing its slashes) at a word's start
_SCHEME = re.compile(
    r"[A-Za-z][A-Za-z0-9+.\-]*://|(?<![^\s'\"(<=\[,;])[A-Za-z][A-Za-z0-9+.\-]*:/?(?!/)"
)
_USER_PASSWORD = re.compile(r"[^:/\s@]*(?::[^@\s]*)?@")
# another URL starts after a space or punctuation, not inside a word ("pw00A://" is a password)
_NEXT_URL = re.compile(r"(?<![A-Za-z0-9+.\-:/@%])[A-Za-z][A-Za-z0-9+.\-]*://")
# what may stand between "://" and the end of a well-formed authority without userinfo
_HOST_PORT = re.compile(r"(?:\[[^\]\s]*\]|[^\s:\[\]/?#@]*)(?::\d*)?[)\]'\",.;:]*")
# a value runs to a space, "&", "#" or quote; punctuation ending a sentence stays outside
_PAIR = re.compile(
    r"(?P<key>[A-Za-z0-9_.%\-]+)(?P<eq>=|%3[dD])"
    r"(?P<value>\"[^\"]*\"?|'[^']*'?|(?:[^\s&#'\"<>]*[^\s&#'\"<>:,.;)])?)"
)


def is_secret_key(name: str) -> bool:
    """Whether a query or config key names a secret (case and separators do not matter)."""
    key = re.sub(r"[^a-z0-9]", "", unquote(name).lower())
    return key.endswith(_SECRET_SUFFIXES)


def redact_url(text: object) -> str:
    """``text`` (a URL, an ``httpx.URL``, or a message quoting URLs) safe to print or store."""
    return _PAIR.sub(_mask_pair, _mask_userinfo(str(text)))


def _mask_pair(match: re.Match[str]) -> str:
    key, eq, value = match.group("key", "eq", "value")
    if not value:
        return match.group(0)
    if is_secret_key(key):
        return f"{key}{eq}{MASK}"
    # a URL in a parameter (``?next=/login?token=…``, ``url=…%26token%3D…``) has its own pairs
    return f"{key}{eq}{_PAIR.sub(_mask_pair, value)}"


def _mask_userinfo(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _SCHEME.finditer(text):
        start = match.end()
        if start <= pos:  # inside userinfo already masked
            continue
        if match.group(0).lower() == "mailto:":  # an address, not a credential
            continue
        at = _userinfo_end(text, start)
        if at is None:
            continue
        out += [text[pos:start], MASK]
        pos = at
    out.append(text[pos:])
    return "".join(out)


def _userinfo_end(text: str, start: int) -> int | None:
    """Index of the ``@`` that ends the userinfo of the URL whose authority starts at
    ``start``, or None when it has none."""
    stop = len(text)
    for end in (text.find("\n", start), _find_scheme(text, start)):
        if end >= 0:
            stop = min(stop, end)
    segment = text[start:stop]
    authority = re.match(r"[^/?#\s]*", segment)
    assert authority is not None
    host, end = authority.group(0), authority.end()
    if "@" in host:
        return start + host.rfind("@")
    # SQLAlchemy reads a user up to ":" or "/" and then anything up to the first "@" as the
    # password, so a "?" or "#" in either (``user:123#4@host``) still leaves it userinfo; so
    # does ``https://host:8443/@user``, masked for that.
    db_style = _USER_PASSWORD.match(segment)
    if db_style:
        return start + db_style.end() - 1
    # A space cut the userinfo short (or a "/", after something that is not host[:port]): it
    # runs on to an "@" further on the line, to the last "@" of that word. An "@" after
    # host[:port] and a "/" is in the path (``https://host/@user``).
    at = segment.find("@", end)
    if at < 0:
        return None
    if _HOST_PORT.fullmatch(host) and "/" in segment[end:at]:
        return None
    word = re.match(r"\S*", segment[at:])
    assert word is not None
    return start + at + word.group(0).rfind("@")


def _find_scheme(text: str, start: int) -> int:
    match = _NEXT_URL.search(text, start)
    return match.start() if match else -1
