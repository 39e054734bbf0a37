"""Workload generator: a deterministic synthetic news load stored as feed documents.

    python benchmarks/workload.py --items 10000 --feeds 50 --out DIR [--seed 1]
        [--dup-rate 0.15] [--rewrite-rate 0.2] [--overlap 0.05] [--per-day 2000] [--jobs N]
    python benchmarks/workload.py ... --replace-fraction 0.1 --out DIR2   # the "changed" set

What it writes into ``--out``:

* ``feedNN-partKK.xml``: per feed (site), several documents like successive snapshots of its
  feed, newest entry first, 100-500 entries each; part K+1 repeats the last ``--overlap``
  share of part K's entries (as a re-polled feed would). Formats: RSS 2.0 (description with
  the full HTML), WordPress-style RSS (teaser + "The post … appeared first on …" description,
  full text in ``content:encoded``, ``?p=N`` guids, ``wfw:commentRss``) and Atom 1.0.
  German and English sites; most feeds declare their language, some do not.
* ``manifest.json``: parameters, counts, the file list and the ground truth: ``truth`` maps
  every guid to the event it reports, ``duplicate_of`` maps each syndicated copy's guid to
  its original's guid, ``event_topic`` gives each event's topic (an ongoing thread).

The text is generated from word lists in this file (German and English news vocabulary,
fictional names and places) and a long tail of coined words (half of the names, places and
key terms, a fifth of the nouns), so the vocabulary keeps growing with the text as real
news's does: sentences of 8-30 words, 150-600 words per article. Each item is one of:

* an *original*: the first report of an event (a set of named entities, key terms and a
  figure; events of one topic share its place, organisation and people);
* a *rewrite* (``--rewrite-rate``): another report of a recent event, with different
  sentences and title, by any site of the event's language;
* a *copy* (``--dup-rate``): a recent original's exact title and body under another site of
  the same language, with that site's own chrome and URL; a quarter of the copies link to
  the original's URL with tracking parameters, a quarter to its AMP variant.

Every item of a site starts with the site's teaser line and ends with its footer (newsletter
line, copyright line, a "related" line rotating among a few links, on some sites a line
quoting the title). Output depends only on the parameters (``--jobs`` only changes speed).
With ``--replace-fraction F`` every document has the share F of its entries replaced by new
items (new guids, new events): the "changed but mostly known" re-poll set. Standard library
only.
"""

from __future__ import annotations

import argparse
import bisect
import html
import json
import multiprocessing
import os
import re
import sys
import time
from array import array
from collections import deque
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from random import Random

END = datetime(2026, 11, 1, tzinfo=UTC)  # the newest item; fixed, so output never changes
VERSION = 3  # bump when the output for given parameters changes


def _w(text: str) -> list[str]:
    """Word list from a ``|``-separated string (entries may contain spaces)."""
    return [w.strip() for w in text.split("|") if w.strip()]


# --------------------------------------------------------------------------- vocabulary
# Own writing throughout; names, places and organisations are invented.

FIRST_NAMES = _w(
    "Anna|Jonas|Miriam|Felix|Leonie|Tobias|Sabine|Matthias|Carla|Henrik|Ines|Volker|Petra|"
    "Yusuf|Elif|Marek|Katja|Florian|Nadine|Ralf|Svenja|Dominik|Hannah|Lukas|Birgit|Oliver|"
    "Ayla|Stefan|Greta|Moritz|Helen|James|Priya|Daniel|Fiona|Samuel|Grace|Owen|Chloe|Arjun|"
    "Nora|Ethan|Maya|Callum|Ruth|Isaac|Zoe|Patrick|Amara|Lewis|Imogen|Theo|Rosa|Niklas"
)
SURNAMES = _w(
    "Kessler|Brandt|Albers|Vogt|Hartmann|Lindner|Roth|Sommer|Engel|Krüger|Seidel|Winkler|"
    "Haas|Lorenz|Pohl|Berger|Franke|Ziegler|Busch|Kuhn|Böhm|Marx|Jansen|Graf|Schenk|Voss|"
    "Ostermann|Reuter|Kaya|Nowak|Demir|Petersen|Lehner|Falk|Thiel|Wendt|Hollis|Carver|"
    "Whitlock|Ashdown|Pemberton|Okafor|Lindqvist|Marsh|Holloway|Prescott|Reyes|Abbott|Quinn|"
    "Fairbairn|Mercer|Dalton|Sinclair|Hargreaves|Calloway|Brennan|Nakamura|Osei|Thorne|"
    "Ellison|Garrick|Rowntree|Stanhope|Winslow|Hadley|Kemp|Lowry|Mistry|Vance|Yardley"
)
DE_PLACE_A = _w(
    "Alt|Neu|Ober|Nieder|Groß|Klein|Bad|Hohen|Steinach|Wald|Mühl|Birken|Eichen|Linden|"
    "Rosen|Kirch|Bergen|Haßel|Wester|Oster|Sand|Moor|Heide|Tann|Erlen|Fichten|Hasel|Weiden|"
    "Kron|Falken|Adler|Wolfs|Hirsch|Roth|Lauter"
)
DE_PLACE_B = _w(
    "brück|hausen|felde|stedt|dorf|heim|bach|burg|berg|au|hagen|rode|kirchen|ingen|wald|"
    "thal|beck|furt|lohe|horst"
)
EN_PLACE_A = _w(
    "North|Ash|Elm|Stone|Mill|Brook|Oak|Wes|Hart|Kings|Red|Fair|Whit|Sand|Thorn|Bram|Lang|"
    "Holm|Cal|Dun|Ridge|Marl|Fen|Hazel|Crow|Bell|Gold|Wren|Hollin|Ravens"
)
EN_PLACE_B = _w(
    "field|bury|ford|ton|wick|ham|stead|mouth|bridge|ley|gate|dale|port|worth|combe|minster|"
    "haven|moor"
)

# German organisations as "<gender> <name>" (articles and cases follow from the gender)
DE_ORG_PATTERNS = _w(
    "m Kreistag {L}|f Sparkasse {L}|n Klinikum {L}|f Hafengesellschaft {L}|m Bauverein {L}|"
    "f IG Pflege {L}|f {S} & {S2} AG|n Bauamt {L}|f Handwerkskammer {L}|"
    "m Mieterbund {L}|f Energiegenossenschaft {L}|m Sportbund {L}|"
    "f Wohnungsbaugesellschaft {L}|m Umweltverband {L}|f Bürgerinitiative {L} bleibt|"
    "m Elternbeirat {L}|f Verkehrsgesellschaft {L}|m Kulturverein {L}|f {S} Holding|"
    "n Stadtwerk {L}"
)
EN_ORG_PATTERNS = _w(
    "{L} Borough Council|the {L} Transit Authority|{S} Group|the {L} Harbour Trust|"
    "{L} General Hospital|{L} Grid Company|{S} & {S2} Ltd|the {L} Tenants Union|"
    "the {L} Chamber of Commerce|the {L} Water Board|{L} Community Trust|"
    "the {L} Roads Department|{S} Energy|the {L} Teachers Association|"
    "the {L} Rail Partnership|{L} Housing Association|the {L} Wildlife Society|"
    "{S} Holdings|the {L} Police Federation|the {L} Farmers Union"
)
DE_ROLES = _w(
    "Bürgermeisterin|Bürgermeister|Landrätin|Landrat|Stadtbaurat|Sprecherin|Sprecher|"
    "Geschäftsführerin|Geschäftsführer|Vorsitzende|Betriebsratschef|Projektleiterin|"
    "Ministerin|Staatssekretär|Kämmerin|Chefärztin|Fraktionschef|Schulleiterin|Polizeisprecher"
)
EN_ROLES = _w(
    "mayor|council leader|spokeswoman|spokesman|chief executive|chair|union representative|"
    "project director|minister|finance officer|head teacher|chief constable|"
    "planning officer|board member|campaign organiser|senior consultant|deputy mayor"
)

# German nouns as (gender, word); gender m/f/n drives articles and adjective endings.
DE_NOUNS = [
    (w[0], w[2:])
    for w in _w(
        "m Haushalt|f Baustelle|n Gutachten|m Antrag|f Regel|n Gesetz|m Beschluss|f Umfrage|"
        "n Verfahren|m Vertrag|f Prüfung|n Konzept|m Zeitplan|f Förderung|n Budget|m Bericht|"
        "f Sanierung|n Angebot|m Ausbau|f Genehmigung|n Programm|m Streit|f Kritik|n Projekt|"
        "m Entwurf|f Finanzierung|n Urteil|m Kompromiss|f Debatte|n Netz|m Standort|"
        "f Verwaltung|n Verbot|m Neubau|f Ausschreibung|n Defizit|m Zuschuss|f Satzung|"
        "n Treffen|m Rückgang|f Forderung|n Signal|m Engpass|f Lösung|n Risiko|m Plan|"
        "f Belastung|n Ergebnis|m Bedarf|f Mehrheit|n Gremium|m Auftrag|f Einigung|n Modell|"
        "m Widerstand|f Abstimmung|n Problem|m Termin|f Verzögerung|n Bündnis|m Entschluss|"
        "f Investition|n Dokument|m Vorschlag|f Anhörung|n Papier|m Fahrplan|f Stellungnahme|"
        "n Moratorium|m Mangel|f Erhöhung|n Interesse|m Einspruch|f Zusage|n Votum|m Etat|"
        "f Planung|n Vorhaben"
    )
]
DE_ADJ = _w(
    "neu|umstritten|geplant|zusätzlich|aktuell|regional|öffentlich|kommunal|ehrgeizig|"
    "überarbeitet|vorläufig|bisherig|dringend|zentral|jährlich|gemeinsam|schwierig|"
    "ursprünglich|kostspielig|deutlich|langwierig|vorgesehen|zweit|erst|offen|knapp|kurzfristig|"
    "mittelfristig|grundlegend|verbindlich"
)
# (3rd person singular, plural / infinitive, participle)
DE_VERBS = [
    tuple(v.split())
    for v in _w(
        "kritisiert kritisieren kritisiert|prüft prüfen geprüft|fordert fordern gefordert|"
        "unterstützt unterstützen unterstützt|verschiebt verschieben verschoben|"
        "begrüßt begrüßen begrüßt|finanziert finanzieren finanziert|"
        "verteidigt verteidigen verteidigt|stoppt stoppen gestoppt|"
        "beschleunigt beschleunigen beschleunigt|übernimmt übernehmen übernommen|"
        "erwartet erwarten erwartet|bewertet bewerten bewertet|ändert ändern geändert|"
        "beantragt beantragen beantragt|verlängert verlängern verlängert|"
        "diskutiert diskutieren diskutiert|beschließt beschließen beschlossen|"
        "empfiehlt empfehlen empfohlen|bestätigt bestätigen bestätigt|"
        "verhandelt verhandeln verhandelt|blockiert blockieren blockiert|"
        "erweitert erweitern erweitert|genehmigt genehmigen genehmigt|"
        "untersucht untersuchen untersucht|bezweifelt bezweifeln bezweifelt|"
        "vertritt vertreten vertreten|kündigt kündigen gekündigt|"
        "verbessert verbessern verbessert|überprüft überprüfen überprüft|"
        "beendet beenden beendet|verteuert verteuern verteuert|plant planen geplant|"
        "vertagt vertagen vertagt|befürwortet befürworten befürwortet|"
        "kürzt kürzen gekürzt|erhöht erhöhen erhöht|sichert sichern gesichert|"
        "vergibt vergeben vergeben|veröffentlicht veröffentlichen veröffentlicht"
    )
]
DE_GROUPS = _w(
    "Anwohner|Fachleute|Gewerkschaften|Eltern|Pendler|Händler|Landwirte|Studierende|"
    "Unternehmen|Vereine|Kommunen|Beschäftigte|Umweltverbände|Mieter|Pflegekräfte|Lehrkräfte|"
    "Gastronomen|Ehrenamtliche|Handwerker|Stadtverordnete|Kritiker|Befürworter|Experten|"
    "Bürgerinnen und Bürger|Verbraucherschützer"
)
DE_ADV = _w(
    "inzwischen|bislang|offenbar|zunächst|erneut|deutlich|weiterhin|ausdrücklich|vorerst|"
    "bereits|nun|dennoch|allerdings|mittlerweile|voraussichtlich|schließlich|ebenfalls|"
    "zudem|kaum|bisher|tatsächlich|wohl|noch|grundsätzlich"
)
DE_TIMES = _w(
    "am Montag|am Dienstag|am Mittwoch|am Donnerstag|am Freitag|am Samstag|am Sonntag|"
    "am Montagabend|am Donnerstagvormittag|in der vergangenen Woche|seit Monaten|"
    "bis zum Jahresende|im kommenden Frühjahr|noch in diesem Monat|am späten Abend|"
    "in den nächsten Wochen|seit dem Sommer|im Herbst|nach der Sommerpause|vor wenigen Tagen|"
    "in der kommenden Sitzung|bis Ende März|seit Jahresbeginn"
)
DE_UNITS = _w(  # the first five take decimals; EN_UNITS in the same order
    "Millionen Euro|Prozent|Kilometer|Tonnen|Milliarden Euro|Wohnungen|Stellen|Haushalte|"
    "Fahrgäste|Unterschriften|Beschäftigte|Betten|Ladepunkte|Schulplätze|Bäume|Tage"
)
DE_QUANT = _w("rund|etwa|mehr als|knapp|fast|über|gut|weniger als|insgesamt")
DE_COMPOUND_A = _w(
    "Hafen|Wasserstoff|Schul|Klinik|Brücken|Strom|Bahn|Wohnungs|Kita|Rathaus|Wind|Solar|"
    "Fernwärme|Glasfaser|Radweg|Tunnel|Flughafen|Deich|Abwasser|Museums|Stadion|Markt|"
    "Bus|Pflege|Hochwasser|Kanal|Bibliotheks|Theater|Hallenbad|Friedhofs|Bauhof|Feuerwehr|"
    "Campus|Park|Gewerbe|Innenstadt|Umgehungs|Tram|Recycling|Depot|Notfall|Sport|Grundwasser"
)
DE_COMPOUND_B = [
    (w[0], w[2:])
    for w in _w(
        "f erweiterung|n netz|m plan|f sanierung|n projekt|m vertrag|f reform|m neubau|"
        "f förderung|n gutachten|m ausbau|f gebühr|n konzept|f abgabe|m umbau|f schließung|"
        "f ausschreibung|m zuschuss|n verfahren|f satzung|m anschluss|f umlage|m streik|"
        "f verlegung|m rückbau|n defizit|f studie|m tarif|f kooperation|n moratorium"
    )
]
DE_SLOGANS = _w(
    "Nachrichten aus Stadt und Land|Ihre Zeitung für die Region|Was die Region bewegt|"
    "Unabhängig seit 1896|Aktuelles aus Politik, Wirtschaft und Kultur|"
    "Das Nachrichtenportal für den Norden|Lokal. Kritisch. Nah dran.|"
    "Nachrichten, Hintergründe, Meinungen"
)
DE_PAPERS = _w(
    "Anzeiger|Kurier|Tageblatt|Rundschau|Zeitung|Bote|Nachrichten|Echo|Post|Volksblatt|"
    "Allgemeine|Kreisblatt"
)
DE_QUOTES = _w(
    "Wir müssen jetzt handeln und dürfen keine Zeit mehr verlieren|"
    "Das ist ein wichtiges Signal für die ganze Region|"
    "Die Zahlen sprechen eine deutliche Sprache|"
    "Niemand hat behauptet, dass es einfach wird|"
    "Wir haben alle Bedenken sorgfältig geprüft|"
    "So kann es auf keinen Fall weitergehen|"
    "Am Ende zählt, was bei den Menschen ankommt|"
    "Wir sind gesprächsbereit, aber nicht um jeden Preis|"
    "Die Entscheidung ist uns nicht leichtgefallen|"
    "Es gibt noch viele offene Fragen"
)

EN_NOUNS = _w(
    "budget|construction site|report|application|rule|law|decision|survey|procedure|"
    "contract|review|concept|timetable|funding|study|renovation|offer|expansion|permit|"
    "programme|dispute|criticism|project|draft|financing|ruling|compromise|debate|network|"
    "site|administration|ban|development|tender|deficit|grant|bylaw|meeting|decline|demand|"
    "signal|shortage|solution|risk|plan|burden|result|majority|committee|contract award|"
    "agreement|model|opposition|vote|deadline|delay|alliance|investment|document|proposal|"
    "hearing|paper|roadmap|statement|moratorium|increase|objection|pledge|estimate|scheme"
)
EN_ADJ = _w(
    "new|controversial|planned|additional|current|regional|public|local|ambitious|revised|"
    "provisional|previous|urgent|central|annual|joint|difficult|original|costly|lengthy|"
    "proposed|second|first|open|narrow|short-term|long-term|fundamental|binding|delayed"
)
# (3rd person singular present, plural present / infinitive, past participle)
EN_VERBS = [
    tuple(v.split())
    for v in _w(
        "criticises criticise criticised|reviews review reviewed|demands demand demanded|"
        "supports support supported|postpones postpone postponed|welcomes welcome welcomed|"
        "funds fund funded|defends defend defended|halts halt halted|"
        "accelerates accelerate accelerated|takes_over take_over taken_over|"
        "expects expect expected|assesses assess assessed|changes change changed|"
        "requests request requested|extends extend extended|discusses discuss discussed|"
        "approves approve approved|recommends recommend recommended|"
        "confirms confirm confirmed|negotiates negotiate negotiated|blocks block blocked|"
        "expands expand expanded|examines examine examined|questions question questioned|"
        "prepares prepare prepared|cancels cancel cancelled|improves improve improved|"
        "ends end ended|plans plan planned|adjourns adjourn adjourned|backs back backed|"
        "cuts cut cut|raises raise raised|secures secure secured|awards award awarded|"
        "publishes publish published|rejects reject rejected|revises revise revised"
    )
]
EN_VERBS = [tuple(p.replace("_", " ") for p in v) for v in EN_VERBS]
EN_GROUPS = _w(
    "residents|experts|unions|parents|commuters|traders|farmers|students|businesses|"
    "local clubs|councils|workers|environmental groups|tenants|nurses|teachers|"
    "restaurant owners|volunteers|builders|councillors|critics|supporters|analysts|"
    "consumer advocates|shop owners"
)
EN_ADV = _w(
    "now|already|apparently|initially|again|clearly|still|expressly|for now|meanwhile|"
    "probably|finally|also|moreover|barely|so far|indeed|in principle|openly|quietly|"
    "reportedly|once more"
)
EN_TIMES = _w(
    "on Monday|on Tuesday|on Wednesday|on Thursday|on Friday|on Saturday|on Sunday|"
    "on Monday evening|on Thursday morning|last week|for months|by the end of the year|"
    "next spring|later this month|late in the evening|in the coming weeks|since the summer|"
    "in the autumn|after the summer recess|a few days ago|at the next session|"
    "by the end of March|since January"
)
EN_UNITS = _w(
    "million pounds|per cent|miles|tonnes|billion pounds|homes|jobs|households|passengers|"
    "signatures|employees|beds|charging points|school places|trees|days"
)
EN_QUANT = _w("around|about|more than|almost|nearly|over|just under|some|a total of")
EN_COMPOUND_A = _w(
    "harbour|hydrogen|school|hospital|bridge|power|rail|housing|nursery|town hall|wind|"
    "solar|district heating|broadband|cycle lane|tunnel|airport|flood barrier|sewage|museum|"
    "stadium|market|bus|care home|flood|canal|library|theatre|swimming pool|cemetery|depot|"
    "fire station|campus|park|business park|high street|bypass|tram|recycling|water"
)
EN_COMPOUND_B = _w(
    "expansion|network|plan|renovation|project|contract|reform|rebuild|subsidy|assessment|"
    "upgrade|charge|strategy|levy|conversion|closure|tender|grant|inquiry|bylaw|connection|"
    "surcharge|strike|relocation|demolition|deficit|study|fare deal|partnership|moratorium"
)
EN_SLOGANS = _w(
    "News from town and country|Your paper for the region|What moves the region|"
    "Independent since 1884|Politics, business and culture, every day|"
    "The news site for the north|Local. Critical. Close to home.|"
    "News, analysis and opinion"
)
EN_PAPERS = _w(
    "Herald|Gazette|Chronicle|Observer|Courier|Post|Times|Record|Tribune|Dispatch|Echo|Advertiser"
)
EN_QUOTES = _w(
    "We have to act now and cannot afford to lose any more time|"
    "This is an important signal for the whole region|"
    "The figures speak for themselves|"
    "Nobody ever said this would be easy|"
    "We have looked carefully at every concern that was raised|"
    "It simply cannot go on like this|"
    "What matters in the end is what people actually notice|"
    "We are ready to talk, but not at any price|"
    "This was not an easy decision for any of us|"
    "There are still a lot of open questions"
)
WEEKDAYS_DE = _w("Montag|Dienstag|Mittwoch|Donnerstag|Freitag|Samstag|Sonntag")
SECTIONS = _w("lokales|politik|wirtschaft|region|kultur|panorama|news|local|business|politics")

# Sentence templates: ``{slot}`` is filled by SLOTS below; the first letter is capitalised.
# Slots: N/Na/Nd noun phrase (nom/acc/dat), V/Vp/Vi/Pt verb (3sg/3pl/infinitive/participle),
# G group, A adverb, T time, NUM figure, Q quote; event slots P person with role, S surname,
# O/Oa/Od organisation, L place, K/Ka/Kd key term, EN the event's figure.
DE_FILLER = _w(
    "{T} {V} {N} {A} {Na}.|"
    "{G} {Vp} {A} {Na}, heißt es aus Kreisen der Verwaltung.|"
    "Nach Einschätzung von Fachleuten {V} {N} {A} {Na}.|"
    "Ob {N} {Na} {V}, ist {A} offen.|"
    "{N} hat {Na} {A} {Pt}.|"
    "Dabei geht es vor allem um {Na} und um {Na}.|"
    "Auch {G} {Vp} {Na}, wie {T} bekannt wurde.|"
    "Für {Na} sind nach bisherigen Planungen {NUM} vorgesehen.|"
    "Zuletzt hatten {G} {Na} {T} {Pt}.|"
    "Das betrifft {NUM}, wie aus einem Papier hervorgeht, das dieser Redaktion vorliegt.|"
    "Wie es weitergeht, soll sich {T} entscheiden.|"
    "{N} soll {T} {Pt} werden, doch {G} sind skeptisch.|"
    "Viele {G} hatten gehofft, dass {N} {Na} {A} {V}.|"
    "Im Gespräch ist {A} auch {N}, das oder die {Na} ersetzen könnte.|"
    "Ein Sprecher sagte, man werde {Na} {T} {Vi}.|"
    "Bis dahin bleibt {N} {A} in Kraft, {T} soll nachgebessert werden.|"
    "„{Q}“, hieß es {T} in einer Mitteilung.|"
    "{G} und {G} {Vp} {Na} seit Langem, bisher ohne Erfolg.|"
    "Der Zeitplan gilt als ehrgeizig, denn {N} ist noch nicht abgeschlossen.|"
    "Laut einer aktuellen Erhebung betrifft {N} {NUM}.|"
    "Ob sich daran {T} etwas ändert, hängt auch von {Nd} ab.|"
    "Unterdessen {V} {N} {Na}, was zusätzliche Kosten verursachen dürfte."
)
DE_EVENT = _w(
    "{P} {V} {Ka} in {L}.|"
    "{O} hat {Ka} {T} {Pt}.|"
    "Nach Angaben von {Od} geht es um {EN}.|"
    "{K} in {L} sorgt seit Wochen für Diskussionen.|"
    "„{Q}“, sagte {S} mit Blick auf {Ka}.|"
    "In {L} {Vp} {G} {Ka}.|"
    "{S} kündigte an, {Ka} {T} zu {Vi}.|"
    "Für {Ka} veranschlagt {O} {EN}.|"
    "Der Streit um {Ka} beschäftigt {A} auch {Oa}.|"
    "Wie {O} mitteilte, {V} {S} {Ka} {A}.|"
    "{K} war bereits {T} Thema im Rat von {L}.|"
    "{P} und {O} wollen {Ka} {T} gemeinsam {Vi}.|"
    "Bei {Kd} in {L} rechnet {O} mit {EN}.|"
    "{S} betonte, {K} sei für {L} unverzichtbar.|"
    "Gegen {Ka} haben {G} aus {L} {EN} gesammelt, berichtet {S}."
)
DE_TITLES = _w(
    "{L}: {O} {V} {Ka}|Streit um {Ka} in {L}|{S} {V} {Ka}|{K}: {O} rechnet mit {EN}|"
    "Wie geht es weiter mit {Kd} in {L}?|{L} {V} {Ka} – {G} {Vp} {Na}|"
    "{EN} für {Ka}: {O} legt nach|{K} in {L}: {S} {V} {Na}"
)
EN_FILLER = _w(
    "{T} the {N} {V} the {Na}, officials said.|"
    "{G} {Vp} the {Na} {A}, according to people close to the administration.|"
    "According to experts, the {N} {V} the {Na} {A}.|"
    "Whether the {N} {V} the {Na} is {A} unclear.|"
    "The {N} has {A} {Pt} the {Na}.|"
    "At issue are above all the {Na} and the {Na}.|"
    "{G} also {Vp} the {Na}, it emerged {T}.|"
    "Current plans set aside {NUM} for the {Na}.|"
    "Most recently, {G} had {Pt} the {Na} {T}.|"
    "That affects {NUM}, according to a paper seen by this newspaper.|"
    "What happens next is expected to be decided {T}.|"
    "The {N} is due to be {Pt} {T}, but {G} remain sceptical.|"
    "Many {G} had hoped that the {N} would {Vi} the {Na}.|"
    "Also under discussion is a {N} that could replace the {Na}.|"
    "A spokesperson said they would {Vi} the {Na} {T}.|"
    "Until then the {N} {A} stays in force, and it is to be improved {T}.|"
    "\u201c{Q}\u201d, a statement said {T}.|"
    "{G} and {G} have wanted to {Vi} the {Na} for years, so far without success.|"
    "The timetable is seen as ambitious because the {N} has not been completed.|"
    "A recent survey suggests the {N} affects {NUM}.|"
    "Whether anything changes {T} also depends on the {Nd}.|"
    "Meanwhile the {N} {V} the {Na}, which is likely to add to the costs."
)
EN_EVENT = _w(
    "{P} {V} the {Ka} in {L}.|"
    "{O} has {Pt} the {Ka} {T}.|"
    "According to {O}, the matter concerns {EN}.|"
    "The {K} in {L} has been debated for weeks.|"
    "\u201c{Q}\u201d, {S} said of the {Ka}.|"
    "In {L}, {G} {Vp} the {Ka}.|"
    "{S} announced plans to {Vi} the {Ka} {T}.|"
    "{O} puts the cost of the {Ka} at {EN}.|"
    "The row over the {Ka} {A} involves {O} as well.|"
    "As {O} announced, {S} {V} the {Ka} {A}.|"
    "The {K} was already on the agenda of the {L} council {T}.|"
    "{P} and {O} want to {Vi} the {Ka} together {T}.|"
    "{O} expects the {Kd} in {L} to involve {EN}.|"
    "{S} stressed that the {K} was essential for {L}.|"
    "{G} in {L} have collected {EN} against the {Ka}, {S} reported."
)
EN_TITLES = _w(
    "{L}: {O} {V} {K}|Row over {K} in {L}|{S} {V} {K}|{K}: {O} expects {EN}|"
    "What next for the {Kd} in {L}?|{L} {V} {K} as {G} {Vp} {Na}|"
    "{EN} for {K}: {O} steps up|{K} in {L}: {S} {V} {Na}"
)

_SLOT_RE = re.compile(r"\{(\w+)\}")
_CAP_AFTER_COLON = re.compile(r"(?<=: )\w")


# --------------------------------------------------------------------------- events


@dataclass(slots=True)
class Event:
    """What every report of one event has in common (built from the seed, never stored)."""

    lang: str
    place: str
    org: tuple[str, str, str]  # (nominative, accusative, dative)
    persons: list[tuple[str, str]]  # (role + full name, surname)
    terms: list[tuple[str, str, str]]  # key term forms (nom, acc, dat)
    figures: list[str]
    # the event's own vocabulary: its reports draw most nouns, verbs and groups from these
    nouns: list[tuple[str, str, str]]
    verbs: list[tuple[str, ...]]
    groups: list[str]


_DE_ART = {"m": ("der", "den", "dem"), "f": ("die", "die", "der"), "n": ("das", "das", "dem")}
# adjective endings after the definite article: nominative, accusative, dative
_DE_ADJ_END = {"m": ("e", "en", "en"), "f": ("e", "e", "en"), "n": ("e", "e", "en")}


def _de_np(gender: str, noun: str, adj: str | None) -> tuple[str, str, str]:
    arts, ends = _DE_ART[gender], _DE_ADJ_END[gender]
    if adj is None:
        return tuple(f"{a} {noun}" for a in arts)  # type: ignore[return-value]
    return tuple(f"{a} {adj}{e} {noun}" for a, e in zip(arts, ends, strict=True))  # type: ignore[return-value]


# noun phrases (nominative, accusative, dative): without and with an adjective
NOUN_PHRASES = {
    "de": (
        [_de_np(g, n, None) for g, n in DE_NOUNS],
        [_de_np(g, n, a) for g, n in DE_NOUNS for a in DE_ADJ],
    ),
    "en": ([(n, n, n) for n in EN_NOUNS], [(f"{a} {n}",) * 3 for n in EN_NOUNS for a in EN_ADJ]),
}


# The long tail. Real news keeps meeting words it has not seen (names of people, places and
# firms, compounds, rare nouns): the 523 entries of the feed fixtures (34.6k tokens) hold
# 5.9k distinct terms (stems, stop words out), and the count grows with the text. The word
# lists alone (generator version 2) gave 1.2k terms at that length and stopped near 4.5k
# however long the text (10k items, 3.3M tokens). So names, places, key terms and some
# nouns come from a coined lexicon drawn Zipf-like (a few coined words common, most rare):
# 1.9k terms at 34.6k tokens, 41k at 10k items. The sentence templates stay few, so the
# common vocabulary is still narrower than real news's.
SYLLABLES = {
    "de": _w(
        "ber|wal|ten|dor|kin|hau|sel|mar|lin|gro|fen|rat|stein|bach|lo|ha|ri|nau|wer|ling|"
        "ro|tal|mer|ka|sen|hol|gen|tra|bur|ke|ni|wen|dal|fel|mo|zel|au|ster|len|bro"
    ),
    "en": _w(
        "mar|low|by|ash|ton|wick|fen|dale|brin|cot|har|ley|ro|sel|ing|ham|ford|ver|lan|pen|"
        "dor|kes|bel|thorn|mer|ell|wyn|cas|tre|ly|den|al|bro|gar|stow|ri|ner|vis|quil|ock"
    ),
}
LEXICON_SIZE = 40_000
TAIL_SHARE = 0.5  # of names, places and key terms coined rather than taken from the lists
ZIPF_S = 0.8  # exponent of the coined words' rank-frequency law


def _lexicon(lang: str) -> tuple[list[str], list[float]]:
    """Coined words of 2-3 syllables (distinct, capitalised) and their cumulative Zipf
    weights (rank ** -ZIPF_S)."""
    rng, syl = Random(f"lexicon/{lang}"), SYLLABLES[lang]
    words: dict[str, None] = {}
    while len(words) < LEXICON_SIZE:
        words["".join(_pick(rng, syl) for _ in range(2 + (rng.random() < 0.6)))] = None
    cum, total = [], 0.0
    for rank in range(1, LEXICON_SIZE + 1):
        total += rank**-ZIPF_S
        cum.append(total)
    return [w.capitalize() for w in words], cum


_LEXICONS: dict[str, tuple[list[str], list[float]]] = {}


def _coined(rng: Random, lang: str) -> str:
    lex = _LEXICONS.get(lang)
    if lex is None:
        lex = _LEXICONS[lang] = _lexicon(lang)
    words, cum = lex
    return words[min(bisect.bisect(cum, rng.random() * cum[-1]), len(words) - 1)]


def _surname(rng: Random, lang: str) -> str:
    return _coined(rng, lang) if rng.random() < TAIL_SHARE else rng.choice(SURNAMES)


def _place(rng: Random, lang: str) -> str:
    a, b = (DE_PLACE_A, DE_PLACE_B) if lang == "de" else (EN_PLACE_A, EN_PLACE_B)
    first = _coined(rng, lang) if rng.random() < TAIL_SHARE else rng.choice(a)
    return first + rng.choice(b)


def _org(rng: Random, lang: str, place: str) -> tuple[str, str, str]:
    pattern = rng.choice(DE_ORG_PATTERNS if lang == "de" else EN_ORG_PATTERNS)
    name = (
        pattern.replace("{L}", place)
        .replace("{S2}", _surname(rng, lang))
        .replace("{S}", _surname(rng, lang))
    )
    if lang == "de":
        return _de_np(name[0], name[2:], None)
    return (name, name, name)


def _person(rng: Random, lang: str) -> tuple[str, str]:
    surname = _surname(rng, lang)
    role = rng.choice(DE_ROLES if lang == "de" else EN_ROLES)
    return (f"{role} {rng.choice(FIRST_NAMES)} {surname}", surname)


def _term(rng: Random, lang: str) -> tuple[str, str, str]:
    coined = rng.random() < TAIL_SHARE
    if lang == "de":
        gender, base = rng.choice(DE_COMPOUND_B)
        first = _coined(rng, lang) if coined else rng.choice(DE_COMPOUND_A)
        return _de_np(gender, first + base, None)
    first = _coined(rng, lang) if coined else rng.choice(EN_COMPOUND_A)
    t = f"{first} {rng.choice(EN_COMPOUND_B)}"
    return (t, t, t)


def _rare_noun(rng: Random, lang: str) -> tuple[str, str, str]:
    """A noun from the long tail (German: capitalised, with a gender)."""
    word = _coined(rng, lang)
    if lang == "de":
        return _de_np(_pick(rng, "mfn"), word, None)
    word = word.lower()
    return (word, word, word)


def _figure(rng: Random, lang: str) -> str:
    k = rng.randrange(len(DE_UNITS))
    if k < 5:  # money, shares, distances, weights: one decimal
        n: float = rng.randint(10, 990) / 10
    else:
        n = rng.choice((rng.randint(2, 99), rng.randint(100, 9999)))
    if lang == "de":
        num = f"{n:.1f}".replace(".", ",") if isinstance(n, float) else f"{n:,}".replace(",", ".")
        return f"{rng.choice(DE_QUANT)} {num} {DE_UNITS[k]}"
    num = f"{n:.1f}" if isinstance(n, float) else f"{n:,}"
    return f"{rng.choice(EN_QUANT)} {num} {EN_UNITS[k]}"


def make_event(seed: int, event: int, topic: int, lang: str) -> Event:
    """An event of ``topic``: the topic's place, organisation and two people, plus people,
    key terms and figures of its own."""
    t = Random(f"{seed}/topic/{topic}")
    place = _place(t, lang)
    org = _org(t, lang, place)
    persons = [_person(t, lang), _person(t, lang)]
    terms = [_term(t, lang), _term(t, lang)]
    e = Random(f"{seed}/event/{event}")
    persons.append(_person(e, lang))
    own_terms = [_term(e, lang) for _ in range(e.randint(2, 4))]
    figures = [_figure(e, lang) for _ in range(2)]
    if e.random() < 0.3:  # some events take place in a neighbouring town
        place = _place(e, lang)
    bare, adj = NOUN_PHRASES[lang]
    nouns = e.sample(bare, 6) + e.sample(adj, 3) + [_rare_noun(e, lang) for _ in range(3)]
    verbs = e.sample(DE_VERBS if lang == "de" else EN_VERBS, 8)
    groups = e.sample(DE_GROUPS if lang == "de" else EN_GROUPS, 4)
    # event terms twice: they dominate the text, the topic's terms recur across its events
    return Event(lang, place, org, persons, own_terms * 2 + terms, figures, nouns, verbs, groups)


# --------------------------------------------------------------------------- text


def _pick(rng: Random, seq):  # type: ignore[no-untyped-def]
    """``rng.choice`` without its overhead (this is the generator's innermost loop)."""
    return seq[int(rng.random() * len(seq))]


class Writer:
    """Fills templates for one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        de = lang == "de"
        bare, adj = NOUN_PHRASES[lang]
        verbs = DE_VERBS if de else EN_VERBS
        groups = DE_GROUPS if de else EN_GROUPS
        adverbs = DE_ADV if de else EN_ADV
        times = DE_TIMES if de else EN_TIMES
        quotes = DE_QUOTES if de else EN_QUOTES

        # A fifth of the nouns is drawn from the long tail afresh (a report's own rare
        # words); 90% of the others, and of the verbs and groups, come from the event's own
        # vocabulary
        def noun(case: int):  # type: ignore[no-untyped-def]
            def fn(r: Random, ev: Event) -> str:
                x = r.random()
                if x < 0.2:
                    return _rare_noun(r, lang)[case]
                if x < 0.92:
                    return _pick(r, ev.nouns)[case]
                return _pick(r, adj if r.random() < 0.4 else bare)[case]

            return fn

        def verb(k: int):  # type: ignore[no-untyped-def]
            return lambda r, ev: _pick(r, ev.verbs if r.random() < 0.9 else verbs)[k]

        def one(seq):  # type: ignore[no-untyped-def]
            return lambda r, ev: _pick(r, seq)

        slots = {
            "N": noun(0),
            "Na": noun(1),
            "Nd": noun(2),
            "V": verb(0),
            "Vp": verb(1),
            "Vi": verb(1),
            "Pt": verb(2),
            "G": lambda r, ev: _pick(r, ev.groups if r.random() < 0.9 else groups),
            "A": one(adverbs),
            "T": one(times),
            "Q": one(quotes),
            "NUM": lambda r, ev: _figure(r, lang),
            "P": lambda r, ev: _pick(r, ev.persons)[0],
            "S": lambda r, ev: _pick(r, ev.persons)[1],
            "O": lambda r, ev: ev.org[0],
            "Oa": lambda r, ev: ev.org[1],
            "Od": lambda r, ev: ev.org[2],
            "L": lambda r, ev: ev.place,
            "K": lambda r, ev: _pick(r, ev.terms)[0],
            "Ka": lambda r, ev: _pick(r, ev.terms)[1],
            "Kd": lambda r, ev: _pick(r, ev.terms)[2],
            "EN": lambda r, ev: _pick(r, ev.figures),
        }

        def compile_(templates: list[str]) -> list[tuple[str, list[tuple[object, str]]]]:
            out = []
            for t in templates:
                bits = _SLOT_RE.split(t)
                out.append(
                    (bits[0], [(slots[bits[i]], bits[i + 1]) for i in range(1, len(bits), 2)])
                )
            return out

        self.filler = compile_(DE_FILLER if de else EN_FILLER)
        self.event = compile_(DE_EVENT if de else EN_EVENT)
        self.titles = compile_(DE_TITLES if de else EN_TITLES)

    @staticmethod
    def fill(template: tuple[str, list[tuple[object, str]]], rng: Random, ev: Event) -> str:
        head, rest = template
        out = [head]
        for fn, literal in rest:
            out.append(fn(rng, ev))  # type: ignore[operator]
            out.append(literal)
        text = "".join(out)
        return text[0].upper() + text[1:]

    def article(self, rng: Random, ev: Event) -> tuple[str, list[str]]:
        """(title, paragraphs) of one report of ``ev``: 150-600 words."""
        title = _CAP_AFTER_COLON.sub(
            lambda m: m.group(0).upper(), self.fill(_pick(rng, self.titles), rng, ev)
        )
        target = 150 + int(450 * rng.betavariate(1.2, 5.0))  # mean ~235 words
        words = 0
        paragraphs: list[str] = []
        used: set[str] = set()
        while words < target:
            sentences = []
            for _ in range(rng.randint(2, 4)):
                lead = len(paragraphs) == 0
                pool = self.event if rng.random() < (0.8 if lead else 0.45) else self.filler
                for _attempt in range(5):
                    s = self.fill(_pick(rng, pool), rng, ev)
                    if s not in used:
                        break
                used.add(s)
                sentences.append(s)
                words += s.count(" ") + 1
            paragraphs.append(" ".join(sentences))
        return title, paragraphs


WRITERS = {"de": Writer("de"), "en": Writer("en")}


# --------------------------------------------------------------------------- sites

_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe"})
_NON_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, limit: int = 60) -> str:
    return _NON_SLUG.sub("-", text.translate(_TRANSLIT).lower()).strip("-")[:limit].strip("-")


@dataclass(slots=True)
class Site:
    index: int
    lang: str
    fmt: str  # rss | wordpress | atom
    name: str
    domain: str
    declares_lang: bool
    teaser: str
    footer: list[str]  # HTML paragraphs; "{title}" is replaced by the item's title
    related: list[tuple[str, str]]  # (url, headline) rotating in the footer
    authors: list[str]
    part_size: int

    @property
    def home(self) -> str:
        return f"https://www.{self.domain}/"

    @property
    def feed_url(self) -> str:
        return self.home + ("atom.xml" if self.fmt == "atom" else "feed/")


def make_site(seed: int, index: int) -> Site:
    rng = Random(f"{seed}/site/{index}")
    lang = "de" if rng.random() < 0.55 else "en"
    r = rng.random()
    fmt = "rss" if r < 0.6 else ("wordpress" if r < 0.85 else "atom")
    place = _place(rng, lang)
    if lang == "de":
        name = f"{place}er {rng.choice(DE_PAPERS)}"
    else:
        name = f"The {place} {rng.choice(EN_PAPERS)}"
    domain = f"{slugify(name.removeprefix('The '))}-{index}.example"
    slogan = rng.choice(DE_SLOGANS if lang == "de" else EN_SLOGANS)
    company = f"{name} {'GmbH' if lang == 'de' else 'Media Ltd'}".removeprefix("The ")
    w = WRITERS[lang]
    ev = make_event(seed, -1 - index, -1 - index, lang)  # headlines for the "related" links
    related = []
    for k in range(6):
        headline = w.fill(rng.choice(w.titles), rng, ev).rstrip(".")
        related.append((f"https://www.{domain}/{slugify(headline)}-{900000 + k}.html", headline))
    if lang == "de":
        teaser = f"{name} – {slogan}"
        footer = [
            f"Newsletter abonnieren: Die wichtigsten Nachrichten aus {place} jeden Morgen "
            "kostenlos in Ihrem Postfach.",
            f"© 2026 {company}. Alle Rechte vorbehalten. Vervielfältigung nur mit Genehmigung.",
        ]
        if rng.random() < 0.5:
            footer.append("Sie lesen: {title} – Folgen Sie uns auch auf Mastodon und Bluesky.")
    else:
        teaser = f"{name} | {slogan}"
        footer = [
            f"Sign up for our newsletter: the day's top stories from {place} in your inbox "
            "every morning, free of charge.",
            f"© 2026 {company}. All rights reserved. Reproduction only with permission.",
        ]
        if rng.random() < 0.5:
            footer.append("You are reading: {title}. Follow us on Mastodon and Bluesky.")
    authors = [f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}" for _ in range(5)]
    return Site(
        index=index,
        lang=lang,
        fmt=fmt,
        name=name,
        domain=domain,
        declares_lang=rng.random() < 0.8,
        teaser=teaser,
        footer=footer,
        related=related,
        authors=authors,
        part_size=rng.randint(100, 500),
    )


# --------------------------------------------------------------------------- the plan

ORIGINAL, REWRITE, COPY = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Params:
    items: int = 10_000
    feeds: int = 50
    seed: int = 1
    dup_rate: float = 0.15
    rewrite_rate: float = 0.2
    overlap: float = 0.05
    per_day: int = 2000


class Plan:
    """Who publishes what when: one row per unique item, in publishing order (cheap; the
    text is rendered later, per feed, from the seed)."""

    def __init__(self, p: Params) -> None:
        self.p = p
        self.sites = [make_site(p.seed, k) for k in range(p.feeds)]
        rng = Random(f"{p.seed}/plan")
        n = p.items
        span = max(86400.0, n / p.per_day * 86400.0)
        self.start = END - timedelta(seconds=span)
        self.t = array("d")  # seconds since start
        self.feed = array("i")
        self.kind = array("b")
        self.event = array("i")
        self.article = array("i")  # whose text: the item itself, or the copied original
        self.variant = array("b")  # copies: 0 own URL, 1 original + tracking, 2 AMP
        self.number = array("i")  # the item's number within its feed (guids, URLs)
        self.event_topic = array("i")
        self.event_lang: list[str] = []
        by_lang: dict[str, list[int]] = {"de": [], "en": []}
        for s in self.sites:
            by_lang[s.lang].append(s.index)
        weights = [0.5 + rng.random() for _ in self.sites]  # some sites publish more
        cum_weights = [sum(weights[: k + 1]) for k in range(len(weights))]
        feeds = range(p.feeds)
        recent_events = {"de": deque(maxlen=300), "en": deque(maxlen=300)}
        recent_topics = {"de": deque(maxlen=400), "en": deque(maxlen=400)}
        recent_originals = {"de": deque(maxlen=200), "en": deque(maxlen=200)}
        per_feed = [0] * p.feeds
        copied: set[tuple[int, int]] = set()  # (original, feed)
        n_topics = 0
        step = span / n
        for i in range(n):
            r = rng.random()
            kind, variant = ORIGINAL, 0
            if r < p.dup_rate:
                lang = "de" if rng.random() < 0.55 else "en"
                orig = rng.choice(recent_originals[lang]) if recent_originals[lang] else -1
                # a site carries a syndicated article once
                others = (
                    [f for f in by_lang[lang] if f != self.feed[orig] and (orig, f) not in copied]
                    if orig >= 0
                    else []
                )
                if others:
                    feed = rng.choice(others)
                    copied.add((orig, feed))
                    kind, event, article = COPY, self.event[orig], self.article[orig]
                    v = rng.random()
                    variant = 0 if v < 0.5 else (1 if v < 0.75 else 2)
            elif r < p.dup_rate + p.rewrite_rate:
                lang = "de" if rng.random() < 0.55 else "en"
                if recent_events[lang] and by_lang[lang]:
                    kind, event, article = REWRITE, rng.choice(recent_events[lang]), i
                    feed = rng.choice(by_lang[lang])
            if kind == ORIGINAL:
                feed = rng.choices(feeds, cum_weights=cum_weights)[0]
                lang = self.sites[feed].lang
                if recent_topics[lang] and rng.random() < 0.35:
                    topic = rng.choice(recent_topics[lang])
                else:
                    topic = n_topics
                    n_topics += 1
                    recent_topics[lang].append(topic)
                event, article = len(self.event_topic), i
                self.event_topic.append(topic)
                self.event_lang.append(lang)
                recent_events[lang].append(event)
            if kind != COPY:
                recent_originals[lang].append(i)
            self.t.append((i + rng.random()) * step)
            self.feed.append(feed)
            self.kind.append(kind)
            self.event.append(event)
            self.article.append(article)
            self.variant.append(variant)
            self.number.append(per_feed[feed])
            per_feed[feed] += 1
        self.n_topics = n_topics

    # ---------------------------------------------------------------- identities

    def published(self, i: int) -> datetime:
        return self.start + timedelta(seconds=self.t[i])

    def slug_url(self, site: Site, number: int, title: str, when: datetime) -> str:
        slug = slugify(title)
        if site.fmt == "wordpress":
            return f"https://www.{site.domain}/{when:%Y/%m/%d}/{slug}-{number}/"
        section = SECTIONS[number % len(SECTIONS)]
        return f"https://www.{site.domain}/{section}/{slug}-{100000 + number}.html"

    def guid(self, site: Site, number: int) -> str:
        if site.fmt == "wordpress":
            return f"https://www.{site.domain}/?p={100000 + number}"
        if site.fmt == "atom":
            return f"tag:{site.domain},2026:article-{100000 + number}"
        return f"{site.domain}/article/{100000 + number}"

    def item_guid(self, i: int) -> str:
        return self.guid(self.sites[self.feed[i]], self.number[i])


# --------------------------------------------------------------------------- rendering

_ESC = html.escape


@dataclass(slots=True)
class Entry:
    guid: str
    url: str
    title: str
    paragraphs: list[str]
    published: datetime
    author: str


def _article(seed: int, article: int, ev: Event) -> tuple[str, list[str]]:
    rng = Random(f"{seed}/article/{article}")
    return WRITERS[ev.lang].article(rng, ev)


class Renderer:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.seed = plan.p.seed
        self._events: dict[int, Event] = {}

    def event(self, e: int) -> Event:
        ev = self._events.get(e)
        if ev is None:
            if len(self._events) > 5000:
                self._events.clear()
            ev = make_event(self.seed, e, self.plan.event_topic[e], self.plan.event_lang[e])
            self._events[e] = ev
        return ev

    def entry(self, i: int) -> Entry:
        plan = self.plan
        site = plan.sites[plan.feed[i]]
        number = plan.number[i]
        when = plan.published(i)
        title, paragraphs = _article(self.seed, plan.article[i], self.event(plan.event[i]))
        author = site.authors[number % len(site.authors)]
        if plan.kind[i] == COPY and plan.variant[i]:
            orig = plan.article[i]
            osite = plan.sites[plan.feed[orig]]
            url = plan.slug_url(osite, plan.number[orig], title, plan.published(orig))
            if plan.variant[i] == 1:
                url += f"?utm_source=rss&utm_medium=feed&utm_campaign={slugify(site.name)}"
            else:
                url = url.replace("https://www.", "https://amp.", 1)
        else:
            url = plan.slug_url(site, number, title, when)
        return Entry(plan.guid(site, number), url, title, paragraphs, when, author)

    def replacement(self, site: Site, key: int, when: datetime) -> Entry:
        """A brand-new item for the "changed" set: new guid, new event, new topic."""
        event = 10**12 + key  # ids far beyond the plan's events and items
        ev = make_event(self.seed, event, event, site.lang)
        title, paragraphs = _article(self.seed, event, ev)
        number = 10**9 + key
        return Entry(
            self.plan.guid(site, number),
            self.plan.slug_url(site, number, title, when),
            title,
            paragraphs,
            when,
            site.authors[key % len(site.authors)],
        )


def body_html(site: Site, entry: Entry, rng: Random) -> str:
    """Teaser line, the article's paragraphs, the site's footer and rotating related links."""
    links = sorted(rng.sample(range(len(site.related)), 2))
    label = "Mehr zum Thema" if site.lang == "de" else "Related"
    related = " | ".join(
        f'<a href="{site.related[k][0]}">{_ESC(site.related[k][1])}</a>' for k in links
    )
    parts = [f"<p><em>{_ESC(site.teaser)}</em></p>"]
    parts.extend(f"<p>{_ESC(p)}</p>" for p in entry.paragraphs)
    parts.extend(f"<p>{_ESC(line.replace('{title}', entry.title))}</p>" for line in site.footer)
    parts.append(f"<p>{label}: {related}</p>")
    return "\n".join(parts)


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def render_document(site: Site, entries: list[Entry], seed: int) -> str:
    """One feed document, newest entry first."""
    newest = max(e.published for e in entries)
    items = []
    for e in sorted(entries, key=lambda e: e.published, reverse=True):
        rng = Random(f"{seed}/chrome/{e.guid}")
        body = body_html(site, e, rng)
        if site.fmt == "atom":
            teaser = e.paragraphs[0]
            items.append(
                f"<entry><title>{_ESC(e.title)}</title>"
                f'<link rel="alternate" type="text/html" href="{_ESC(e.url)}"/>'
                f"<id>{_ESC(e.guid)}</id>"
                f"<published>{e.published.isoformat()}</published>"
                f"<updated>{e.published.isoformat()}</updated>"
                f"<author><name>{_ESC(e.author)}</name></author>"
                f"<summary>{_ESC(teaser)}</summary>"
                f'<content type="html">{_ESC(body)}</content></entry>'
            )
            continue
        date = format_datetime(e.published)
        if site.fmt == "wordpress":
            if site.lang == "de":
                trailer = "Der Beitrag {t} erschien zuerst auf {s}."
            else:
                trailer = "The post {t} appeared first on {s}."
            trailer = trailer.format(
                t=f'<a href="{e.url}">{_ESC(e.title)}</a>',
                s=f'<a href="{site.home}">{_ESC(site.name)}</a>',
            )
            desc = f"<p>{_ESC(e.paragraphs[0][:300])} [&#8230;]</p>\n<p>{trailer}</p>"
            items.append(
                f"<item><title>{_ESC(e.title)}</title><link>{_ESC(e.url)}</link>"
                f"<comments>{_ESC(e.url)}#respond</comments>"
                f"<dc:creator>{_cdata(e.author)}</dc:creator><pubDate>{date}</pubDate>"
                f'<guid isPermaLink="false">{_ESC(e.guid)}</guid>'
                f"<description>{_cdata(desc)}</description>"
                f"<content:encoded>{_cdata(body)}</content:encoded>"
                f"<wfw:commentRss>{_ESC(e.url)}feed/</wfw:commentRss>"
                f"<slash:comments>0</slash:comments></item>"
            )
            continue
        items.append(
            f"<item><title>{_ESC(e.title)}</title><link>{_ESC(e.url)}</link>"
            f'<guid isPermaLink="false">{_ESC(e.guid)}</guid><pubDate>{date}</pubDate>'
            f"<dc:creator>{_ESC(e.author)}</dc:creator>"
            f"<description>{_cdata(body)}</description></item>"
        )
    lang_code = "de-DE" if site.lang == "de" else "en-GB"
    slogan = site.teaser.split(" – " if site.lang == "de" else " | ", 1)[-1]
    if site.fmt == "atom":
        lang_attr = f' xml:lang="{lang_code}"' if site.declares_lang else ""
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<feed xmlns="http://www.w3.org/2005/Atom"{lang_attr}>\n'
            f"<title>{_ESC(site.name)}</title><subtitle>{_ESC(slogan)}</subtitle>\n"
            f'<link rel="alternate" type="text/html" href="{site.home}"/>\n'
            f'<link rel="self" type="application/atom+xml" href="{site.feed_url}"/>\n'
            f"<id>{site.home}</id><updated>{newest.isoformat()}</updated>\n"
            + "\n".join(items)
            + "\n</feed>\n"
        )
    extra = ""
    if site.fmt == "wordpress":
        extra = "<generator>https://wordpress.org/?v=6.6.2</generator>\n"
    lang_el = f"<language>{lang_code}</language>\n" if site.declares_lang else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:wfw="http://wellformedweb.org/CommentAPI/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:slash="http://purl.org/rss/1.0/modules/slash/">\n<channel>\n'
        f"<title>{_ESC(site.name)}</title>\n"
        f'<atom:link href="{site.feed_url}" rel="self" type="application/rss+xml"/>\n'
        f"<link>{site.home}</link>\n<description>{_ESC(slogan)}</description>\n"
        f"<lastBuildDate>{format_datetime(newest)}</lastBuildDate>\n{lang_el}{extra}"
        + "\n".join(items)
        + "\n</channel>\n</rss>\n"
    )


# --------------------------------------------------------------------------- writing

_PLAN: Plan | None = None  # shared with forked workers


def _feed_parts(plan: Plan, feed: int, members: list[int]) -> list[list[int]]:
    """The feed's items split into successive snapshots, each repeating the tail of the
    previous one."""
    size = plan.sites[feed].part_size
    overlap = int(round(plan.p.overlap * size))
    parts = []
    for start in range(0, len(members), size):
        head = members[max(0, start - overlap) : start] if start else []
        parts.append(head + members[start : start + size])
    return parts


def _write_feed(task: tuple[int, list[int], str, float]) -> list[dict[str, object]]:
    feed, members, out, replace_fraction = task
    plan = _PLAN
    assert plan is not None
    site = plan.sites[feed]
    renderer = Renderer(plan)
    files = []
    for k, part in enumerate(_feed_parts(plan, feed, members)):
        entries = [renderer.entry(i) for i in part]
        replaced = 0
        if replace_fraction > 0:
            rng = Random(f"{plan.p.seed}/replace/{feed}/{k}")
            n = max(1, int(round(replace_fraction * len(entries))))
            for pos in rng.sample(range(len(entries)), n):
                key = (feed * 1_000_000 + k) * 10_000 + pos
                entries[pos] = renderer.replacement(site, key, entries[pos].published)
            replaced = n
        name = f"feed{feed:02d}-part{k:02d}.xml"
        text = render_document(site, entries, plan.p.seed)
        (Path(out) / name).write_text(text, encoding="utf-8")
        files.append(
            {
                "name": name,
                "feed": feed,
                "format": site.fmt,
                "lang": site.lang,
                "entries": len(entries),
                "replaced": replaced,
                "bytes": len(text.encode()),
            }
        )
    return files


def generate(
    p: Params, out: Path, *, replace_fraction: float = 0.0, jobs: int = 1
) -> dict[str, object]:
    """Write the documents and ``manifest.json`` into ``out``; returns the manifest."""
    global _PLAN
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    plan = _PLAN = Plan(p)
    members: list[list[int]] = [[] for _ in range(p.feeds)]
    for i, f in enumerate(plan.feed):
        members[f].append(i)
    tasks = [(f, members[f], str(out), replace_fraction) for f in range(p.feeds) if members[f]]
    tasks.sort(key=lambda t: -len(t[1]))  # big feeds first: better load balance
    if jobs > 1:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_write_feed, tasks, chunksize=1)
    else:
        results = [_write_feed(t) for t in tasks]
    files = sorted((f for r in results for f in r), key=lambda f: f["name"])
    kinds = [plan.kind.count(k) for k in (ORIGINAL, REWRITE, COPY)]
    guids = [plan.item_guid(i) for i in range(p.items)]
    manifest: dict[str, object] = {
        "generator": VERSION,
        "params": asdict(p),
        "replace_fraction": replace_fraction,
        "items": p.items,  # unique items (what `items` holds after importing everything)
        "entries": sum(int(f["entries"]) for f in files),  # entries in all files
        "replaced": sum(int(f["replaced"]) for f in files),  # new items in a changed set
        "bytes": sum(int(f["bytes"]) for f in files),
        "originals": kinds[ORIGINAL],
        "rewrites": kinds[REWRITE],
        "copies": kinds[COPY],
        "events": len(plan.event_topic),
        "topics": plan.n_topics,
        "first_published": plan.published(0).isoformat() if p.items else None,
        "last_published": plan.published(p.items - 1).isoformat() if p.items else None,
        "sites": [
            {"feed": s.index, "name": s.name, "format": s.fmt, "lang": s.lang, "url": s.feed_url}
            for s in plan.sites
        ],
        "files": files,
        "truth": {g: plan.event[i] for i, g in enumerate(guids)},
        "duplicate_of": {
            g: guids[plan.article[i]] for i, g in enumerate(guids) if plan.kind[i] == COPY
        },
        "event_topic": list(plan.event_topic),
        "seconds": round(time.perf_counter() - started, 2),
    }
    with (out / "manifest.json").open("w", encoding="utf-8") as fh:
        json.dump(manifest, fh, ensure_ascii=False, separators=(",", ":"))
    return manifest


def code_fingerprint() -> str:
    """A short hash of the installed ``aggregator`` package's sources: which code a benchmark
    measured (printed at the start and end of a run; a change in between is reported)."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec("aggregator")
    if spec is None or spec.origin is None:
        return "unknown"
    digest = hashlib.sha256()
    for path in sorted(Path(spec.origin).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def load_manifest(directory: Path) -> dict[str, object]:
    with (directory / "manifest.json").open(encoding="utf-8") as fh:
        return json.load(fh)


def document_paths(directory: Path) -> list[Path]:
    """The documents of a generated directory, in name order (feed by feed)."""
    return sorted(directory.glob("feed*-part*.xml"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000, help="unique items (default 10000)")
    ap.add_argument("--feeds", type=int, default=50, help="feeds/sites (default 50)")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dup-rate", type=float, default=0.15, help="share of syndicated copies")
    ap.add_argument("--rewrite-rate", type=float, default=0.2, help="share of rewrites")
    ap.add_argument("--overlap", type=float, default=0.05, help="share repeated by next part")
    ap.add_argument("--per-day", type=int, default=2000, help="items published per day")
    ap.add_argument(
        "--replace-fraction",
        type=float,
        default=0.0,
        help="replace this share of each document's entries by new items (changed set)",
    )
    ap.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    if args.items < 1 or args.feeds < 1 or args.feeds > 10_000:
        ap.error("--items must be >= 1 and --feeds in 1..10000")
    if not 0 <= args.dup_rate + args.rewrite_rate <= 1:
        ap.error("--dup-rate + --rewrite-rate must be within 0..1")
    p = Params(
        items=args.items,
        feeds=args.feeds,
        seed=args.seed,
        dup_rate=args.dup_rate,
        rewrite_rate=args.rewrite_rate,
        overlap=args.overlap,
        per_day=args.per_day,
    )
    m = generate(p, args.out, replace_fraction=args.replace_fraction, jobs=args.jobs)
    files = m["files"]
    assert isinstance(files, list)
    print(
        f"{m['items']} items ({m['originals']} originals, {m['rewrites']} rewrites, "
        f"{m['copies']} copies; {m['events']} events, {m['topics']} topics), "
        f"{m['entries']} entries in {len(files)} files, {int(m['bytes']) / 1e6:.1f} MB, "
        f"{m['first_published']} .. {m['last_published']}"
        + (f", {m['replaced']} entries replaced" if m["replaced"] else "")
        + f" -> {args.out} in {m['seconds']} s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
