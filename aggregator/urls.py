"""Canonical URLs: the address two links to the same article have in common.

Pure functions, used by the parser (Google News links), the normaliser (every item's
canonical URL) and the store (matching an item that moved).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from w3lib.url import canonicalize_url

__all__ = ["canonical_url", "is_google_news_link", "unwrap_bing"]

_GOOGLE_NEWS_HOSTS = frozenset({"news.google.com"})
# Redirect-only paths: the opaque id cannot be decoded offline (since 2024), so such a
# link is never the article's canonical URL.
_GOOGLE_NEWS_PATHS = ("/rss/articles/", "/__i/rss/rd/articles/", "/articles/", "/read/")

_TRACKING_PREFIXES = ("utm_", "mc_", "pk_", "hsa_", "at_", "ns_", "wt.", "_hs")
_TRACKING_PARAMS = frozenset(
    {
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "gbraid",
        "wbraid",
        "msclkid",
        "yclid",
        "igshid",
        "igsh",
        "twclid",
        "ttclid",
        "li_fat_id",
        "mkt_tok",
        "ocid",
        "cmpid",
        "cmp",
        "ncid",
        "icid",
        "smid",
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "_ga",
        "_gl",
        "wt_mc",
        "wt_zmc",
        "wtmc",
        "xtor",
        "spm",
        "sr_share",
        "soc_src",
        "soc_trk",
        "s_cid",
        "guccounter",
        "guce_referrer",
        "guce_referrer_sig",
        "vero_id",
        "oly_enc_id",
        "oly_anon_id",
        "rss",
        "amp",
    }
)
# Hosts prefixes folded onto the bare domain. ``www.`` is folded too: a publisher's
# links appear both with and without it (sjrnews.com vs www.sjrnews.com in the Google
# fixture) and no news site serves different articles under the two names.
_HOST_PREFIXES = ("www.", "m.", "amp.", "mobile.")
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What canonicalize_url returns as it is: a lower-case ASCII host name (no port, no IDNA
# label, not a number) and a path of unreserved characters without dot or empty segments.
_PLAIN_HOST = re.compile(
    r"(?!.*xn--)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_PLAIN_PATH = re.compile(r"(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?")
_AMP_SEGMENT_RE = re.compile(r"/amp(?=/|$)", re.IGNORECASE)
_AMP_SUFFIX_RE = re.compile(r"\.amp(?=\.html?$|$)", re.IGNORECASE)


def is_google_news_link(url: str | None) -> bool:
    """True for news.google.com article redirect links (never an article's own URL)."""
    if not url or "news.google.com" not in url.lower():  # the host is part of the string
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    return host in _GOOGLE_NEWS_HOSTS and parts.path.startswith(_GOOGLE_NEWS_PATHS)


def _is_bing_click(parts) -> bool:
    host = (parts.hostname or "").lower()
    return (host == "bing.com" or host.endswith(".bing.com")) and parts.path.lower().endswith(
        "/apiclick.aspx"
    )


def unwrap_bing(url: str) -> str:
    """Return the publisher URL inside a Bing ``apiclick.aspx?...&url=<target>`` link.

    Anything else (including a click link without a usable ``url``) is returned unchanged,
    so the caller can apply this to every link.
    """
    if "bing.com" not in url.lower():  # the host is part of the string: not a click link
        return url
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url
    if not _is_bing_click(parts):
        return url
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() == "url":
            target = value.strip()
            if target.lower().startswith(("http://", "https://")):
                return target
    return url


def _fold_host(host: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _HOST_PREFIXES:
            # keep at least "name.tld"
            if host.startswith(prefix) and host.count(".") >= 2:
                host = host[len(prefix) :]
                changed = True
    return host


def _is_tracking(key: str, value: str) -> bool:
    k = key.lower()
    if k in _TRACKING_PARAMS or k.startswith(_TRACKING_PREFIXES):
        return True
    return k == "outputtype" and value.lower() == "amp"


def canonical_url(url: str | None) -> str | None:
    """The URL two links to the same article have in common, or None if there is none.

    https over http, lower-case host without ``www.``/``m.``/``amp.``, default port and
    fragment dropped, tracking parameters removed, the rest sorted, AMP paths folded,
    Bing redirects unwrapped. Google News redirect links and non-http(s) strings (e.g.
    ``tag:`` guids) give None: they never identify the article page.
    """
    if not url:
        return None
    url = unwrap_bing(url.strip())
    if is_google_news_link(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = _fold_host(parts.hostname.lower().rstrip("."))
    netloc = host if port in (None, 80, 443) else f"{host}:{port}"
    path = _AMP_SEGMENT_RE.sub("", parts.path)
    path = _AMP_SUFFIX_RE.sub("", path) or "/"
    query = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k, v)
    ]
    rebuilt = urlunsplit(("https", netloc, path, urlencode(query), ""))
    if not query and _PLAIN_HOST.fullmatch(netloc) and _PLAIN_PATH.fullmatch(path):
        return rebuilt  # nothing for w3lib to change (most article links; half the time)
    # w3lib: percent-encoding normalisation, dot segments, query sorting.
    return canonicalize_url(rebuilt, keep_fragments=False)
