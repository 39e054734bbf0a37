"""What survives translation: the anchors that let a German and an English report of one
event meet.

Two reports of one event in two languages share almost no words, but they share names
(people, companies, places, products: ``Lenzwerk``, ``Lysenkov``/``Lyssenkow``), numbers
with their scale (``1,8 Milliarden Euro`` = ``€1.8bn``, ``58.000`` = ``58,000``) and the
places a small lexicon knows in both languages (``München``/``Munich``, ``Köln``/``Cologne``).
An anchor is one of these in a language-neutral spelling: names folded to a skeleton
(case, accents, ``ß``, doubled letters and common transliteration pairs), numbers as values,
exonyms and demonyms to one key. Pure functions; the engine weighs and compares them.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache
from itertools import chain

from .text import STOP

# German and English forms of places, countries and institutions that differ between the
# two languages (including adjectival forms a report uses instead: "Münchner Flughafen").
_EXONYMS: dict[str, str] = {}
for _key, _forms in {
    "munich": "münchen muenchen münchner muenchner munich",
    "cologne": "köln koeln kölner koelner cologne",
    "vienna": "wien wiener vienna viennese",
    "nuremberg": "nürnberg nuernberg nürnberger nuremberg",
    "hanover": "hannover hannoveraner hanover",
    "brunswick": "braunschweig brunswick",
    "frankfurt": "frankfurt frankfurter",
    "hamburg": "hamburg hamburger hamburgs",
    "berlin": "berlin berliner berlins",
    "bavaria": "bayern bayerisch bayerische bayerischen bayerischer bavaria bavarian",
    "saxony": "sachsen sächsisch sächsische sächsischen saxony saxon",
    "rhine": "rhein rheinisch rhine",
    "danube": "donau danube",
    "baltic": "ostsee baltic",
    "northsea": "nordsee",
    "lakeconstance": "bodensee",
    "warsaw": "warschau warsaw",
    "szczecin": "stettin stettiner szczecin",
    "gdansk": "danzig gdansk gdańsk",
    "wroclaw": "breslau wroclaw wrocław",
    "prague": "prag prague",
    "brussels": "brüssel bruessel brussels",
    "geneva": "genf geneva",
    "zurich": "zürich zuerich zurich",
    "milan": "mailand milan",
    "rome": "rom rome",
    "venice": "venedig venice",
    "moscow": "moskau moscow",
    "kyiv": "kiew kyiv kiev",
    "athens": "athen athens",
    "lisbon": "lissabon lisbon",
    "copenhagen": "kopenhagen copenhagen",
    "thehague": "haag",
    "beijing": "peking beijing",
    "germany": "deutschland deutsche deutschen deutscher deutsches germany german germans",
    "austria": "österreich oesterreich österreichische österreichischen österreichischer "
    "austria austrian",
    "switzerland": "schweiz schweizer schweizerische switzerland swiss",
    "france": "frankreich französisch französische französischen france french",
    "poland": "polen polnisch polnische polnischen poland polish",
    "russia": "russland russisch russische russischen russia russian",
    "ukraine": "ukraine ukrainisch ukrainische ukrainischen ukrainian",
    "italy": "italien italienisch italienische italienischen italy italian",
    "spain": "spanien spanisch spanische spanischen spain spanish",
    "netherlands": "niederlande niederländisch niederländische netherlands dutch holland",
    "britain": "großbritannien grossbritannien britisch britische britischen britischer "
    "briten britain british briton britons uk england englisch englische engländer english",
    "unitedstates": "usa vereinigten amerikanisch amerikanische amerikanischen us american",
    "china": "china chinesisch chinesische chinesischen chinese",
    "japan": "japan japanisch japanische japanischen japanese",
    "turkey": "türkei tuerkei türkisch türkische turkey turkish",
    "greece": "griechenland griechisch griechische greece greek",
    "czechia": "tschechien tschechisch tschechische czech czechia",
    "hungary": "ungarn ungarisch ungarische hungary hungarian",
    "denmark": "dänemark daenemark dänisch dänische denmark danish",
    "norway": "norwegen norwegisch norwegische norway norwegian",
    "sweden": "schweden schwedisch schwedische sweden swedish",
    "iceland": "island isländisch isländische iceland icelandic",
    "europe": "europa europäisch europäische europäischen europe european",
    "eu": "eu",
    "un": "uno un",
    "nato": "nato",
}.items():
    for _form in _forms.split():
        _EXONYMS[_form] = _key

# Words of web pages' chrome, in either language's pages (menus, sharing, newsletters), so
# that two young sites whose chrome is not learned yet do not meet through it.
_CHROME = frozenset(
    [
        "abo",
        "about",
        "account",
        "android",
        "app",
        "apps",
        "archiv",
        "archive",
        "blog",
        "cookie",
        "cookies",
        "datenschutz",
        "e-mail",
        "email",
        "epaper",
        "facebook",
        "feed",
        "home",
        "impressum",
        "instagram",
        "ios",
        "kontakt",
        "contact",
        "linkedin",
        "live",
        "liveblog",
        "login",
        "logout",
        "mastodon",
        "menu",
        "menü",
        "news",
        "newsletter",
        "online",
        "podcast",
        "podcasts",
        "privacy",
        "rss",
        "shop",
        "sport",
        "start",
        "suche",
        "search",
        "service",
        "teilen",
        "share",
        "telegram",
        "threads",
        "tiktok",
        "twitter",
        "update",
        "updates",
        "video",
        "videos",
        "werbung",
        "whatsapp",
        "youtube",
    ]
)

# Scales written after a number, and the currency and percent marks kept with it.
_SCALES = {
    "tausend": 1e3, "thousand": 1e3, "k": 1e3,
    "mio": 1e6, "million": 1e6, "millionen": 1e6, "millions": 1e6, "m": 1e6, "mn": 1e6,
    "mrd": 1e9, "milliarde": 1e9, "milliarden": 1e9, "billion": 1e9, "billions": 1e9,
    "bn": 1e9, "b": 1e9,
}  # fmt: skip
# A number not within a word or another number: ``(?<![\w.,])\d{1,3}(?:([.,])\d{3})+... |
# \d+...``, with its first digit taken out in front of the lookbehind and the alternatives,
# so that a search skips to the next digit in C rather than tries the lookbehind at every
# character (the same matches, ``tests/test_anchors.py``; ~2.5x faster).
_NUMBER_RE = re.compile(
    r"(\d(?<![\w.,]\d)(?:\d{0,2}(?:([.,])\d{3})+(?:[.,]\d+)?|\d*(?:[.,]\d+)?))"
    r"(?:\s?(%|prozent|percent|per cent)|\s?([a-zA-Zäöü]+)\b)?",
    re.IGNORECASE,
)
_WORD_RE = re.compile(r"[^\W\d_][^\W_]*(?:['’][^\W\d_]+)?", re.UNICODE)


def number_anchors(text: str, lang: str) -> set[str]:
    """Numbers as values with their scale (``#1.8e9``, ``#58000``, ``#41.7%``), read with the
    decimal mark of the text's language. One- and two-digit bare numbers are too common to
    tell events apart (days, counts), nor are years: only those with a decimal part, a scale
    or ``%``, or from 100 on, count."""
    out = set()
    for m in _NUMBER_RE.finditer(text):
        raw, sep, pct, word = m.group(1), m.group(2), m.group(3), (m.group(4) or "").lower()
        decimal = "," if lang == "de" else "."
        try:
            if sep and sep != decimal:  # grouped thousands: 58.000 (de), 58,000 (en)
                digits = raw.replace(sep, "")
                value = float(digits.replace(decimal, ".")) if decimal in digits else float(digits)
            else:
                value = (
                    float(raw.replace(decimal, "."))
                    if decimal in raw
                    else float(raw.replace(",", ""))
                )
        except ValueError:  # "192.168.0.1" or "1,000.000" in English: no one figure
            continue
        scale = _SCALES.get(word, 1.0)
        if not math.isfinite(value * scale):
            continue  # 309 digits or more: no figure a report gives (and int() would raise)
        if (
            scale == 1.0
            and not pct
            and value == int(value)
            and (value < 100 or 1900 <= value <= 2100)
        ):
            continue  # a day, a small count, a year: in every other report too
        value *= scale
        out.add(f"#{value:.4g}{'%' if pct else ''}")
    return out


@lru_cache(maxsize=20_000)  # ~210 bytes an entry: bounded, as the daemon meets names all year
def skeleton(word: str) -> str:
    """A name's spelling reduced to what German and English renderings share:
    ``Lyssenkow``/``Lysenkov``, ``Müller``/``Mueller``/``Muller``, ``Straße``/``Strasse``."""
    w = word.casefold().replace("ß", "ss")
    w = w.replace("ae", "a").replace("oe", "o").replace("ue", "u")
    w = "".join(c for c in unicodedata.normalize("NFKD", w) if not unicodedata.combining(c))
    for a, b in (("sch", "sh"), ("tsch", "ch"), ("ch", "h"), ("ph", "f"), ("th", "t"),
                 ("w", "v"), ("y", "i"), ("j", "i"), ("c", "k"), ("z", "s"), ("x", "ks")):  # fmt: skip
        w = w.replace(a, b)
    w = re.sub(r"(.)\1+", r"\1", w)
    return re.sub(r"(s|es|s's|'s|’s)$", "", w) if len(w) > 5 else w


def name_anchors(text: str) -> set[str]:
    """Capitalised words that are not stop words (a sentence opener or a German noun is
    one too: it meets nothing in the other language, so it costs nothing but memory), and
    every word a small lexicon knows in both languages, in a language-neutral spelling."""
    # each distinct whitespace-separated chunk once, its anchors cached: no word spans
    # whitespace, and splitting and a lookup per chunk cost less than the word pattern's
    # scan of the whole text (``tests/test_anchors.py``)
    return set(chain.from_iterable(map(_chunk_anchors, set(text.split()))))


@lru_cache(maxsize=50_000)  # bounded like the stems: a year brings new words every day
def _chunk_anchors(chunk: str) -> tuple[str, ...]:
    """The anchors of the words of a text's chunk between whitespace (cached: news
    vocabulary repeats, and this was a Python step of several lookups per word of every
    item)."""
    return tuple(chain.from_iterable(map(_word_anchors, _WORD_RE.findall(chunk))))


def _word_anchors(word: str) -> tuple[str, ...]:
    """One word's anchors: a lexicon key, or the skeletons of a name's parts."""
    folded = word.casefold()
    exo = _EXONYMS.get(folded)
    if exo is not None:
        return (f"@{exo}",)
    if folded in STOP or folded in _CHROME or len(word) < 3 or not word[0].isupper():
        return ()
    return tuple(skeleton(p) for p in folded.split("-") if len(p) >= 3 and p not in STOP)


def anchors(title: str, body: str, lang: str) -> frozenset[str]:
    """The anchors of an item: its title and the first part of its body."""
    text = f"{title}\n{body[:1500]}"
    return frozenset(name_anchors(text) | number_anchors(text, lang))


def is_lexical(anchor: str) -> bool:
    """A lexicon anchor (a country, a city's exonym): shared by many unrelated reports."""
    return anchor.startswith("@")
