"""Build the labelled clustering corpus (dev + test splits) from hand-written sources.

All outlets, people, companies and events in this corpus are fictional; every sentence was
written for this project. The article prose lives in ``source/dev.txt`` and
``source/test.txt``; this script only adds each outlet's page chrome (header, byline, footer
with rotating ads), derives URL variants, syndicated copies and Google News / Bing News
entries, shuffles the items deterministically and writes::

    dev.jsonl  dev.labels.jsonl  test.jsonl  test.labels.jsonl

Run:  python tests/data/build_corpus.py          (writes and validates)
      python tests/data/build_corpus.py --check  (validates the written files only)

Source format (one block per item, blocks start with a line ``@@ kind key=value ...``):

    @@ site key=K outlet=O [story=S] [thread=T] time=ISO [section=X] [author="A B"] [nolang] [nodate]
    # Title
    Lead paragraph (used as the feed summary).

    Further paragraphs ...

    @@ variant of=K mode=utm|amp|m|http|fbclid|newsletter [time=ISO] [nolang] [nodate]
    @@ copy key=K of=K2 outlet=O time=ISO [author=...]      (syndicated reprint of K2)
    # Changed headline                                       (omitted: verbatim wire copy)
    s|old words|new words                                    (a few small edits, optional)
    @@ google of=K [time=ISO]                                (points at corpus article K)
    [# The publisher's own headline for K]
    @@ google key=K publisher=P [story=S] [thread=T] time=ISO [lang=de|en]
    # Headline of an article that is not in the corpus
    @@ google key=K publisher=P dup=K2 time=ISO [lang=..]    (verbatim copy of K2 elsewhere:
    # K2's headline                                           K2's dup group, story, thread)
    @@ bing of=K [time=ISO] [target=utm]
    @@ bing key=K publisher=P [story=S] [thread=T] time=ISO [lang=..] [host=...]
    # Title
    Snippet of one or two sentences.
    @@ part name=N    (later items form part N: shuffled on their own and numbered after the
                       earlier parts, so adding a part keeps the earlier items' ids)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import shlex
import sys
import unicodedata
from collections import Counter, defaultdict
from datetime import UTC as _UTC
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote

HERE = Path(__file__).resolve().parent
SEED = 20260301

# --------------------------------------------------------------------------------------------
# Outlets and their chrome
# --------------------------------------------------------------------------------------------

OUTLETS: dict[str, dict] = {
    "rheinblick": {
        "name": "Rheinblick Digital",
        "lang": "de",
        "host": "www.rheinblick-digital.de",
        "url": "/{section}/{slug}-{num}.html",
        "header": [
            "Rheinblick Digital",
            "Startseite",
            "Politik",
            "Wirtschaft",
            "Region",
            "Sport",
            "Kultur",
            "Digital",
            "E-Paper",
            "Abo testen",
            "Anmelden",
            "Suche",
            "Startseite › {section_label}",
        ],
        "byline": "Von {author} | {date_de}, {time_de} Uhr | Lesezeit: {minutes} Min.",
        "inline": [
            "Lesen Sie auch: Warum die Fähre in Lahnstein im Winter öfter ausfällt",
            "Lesen Sie auch: So teuer ist das Parken in den Innenstädten am Mittelrhein",
            "Lesen Sie auch: Der große Rheinblick-Check – welche Bäckerei backt noch selbst?",
            "Lesen Sie auch: Was Eltern über das neue Kita-Gesetz wissen müssen",
            "Lesen Sie auch: Radwege im Test – wo es zwischen Bingen und Bonn hakt",
        ],
        "jobs": [
            "Redakteur/in (m/w/d) Lokalredaktion Neuwied – Vollzeit, ab sofort",
            "Mediaberater/in (m/w/d) für Print und Digital im Außendienst Koblenz",
            "Werkstudent/in (m/w/d) Social Media und Audience Development",
            "Zusteller/in (m/w/d) für Tageszeitungen in Andernach und Umgebung – Minijob",
            "Fachinformatiker/in Systemintegration (m/w/d) für unser Druckzentrum",
        ],
        "footer": """Mehr aus dem Ressort {section_label}
Diesen Artikel teilen: Facebook | X | WhatsApp | E-Mail | Link kopieren
Sie lesen: {title}

Der Rheinblick-Morgen – unser Newsletter
Jeden Werktag um 6 Uhr: die wichtigsten Nachrichten aus der Region, Deutschland und der Welt, kompakt zusammengefasst von unserer Redaktion. Jetzt kostenlos anmelden und den Tag informiert beginnen. Abmeldung jederzeit möglich.

Im Rheinblick-Shop
Wandern am Mittelrhein: 44 Touren zwischen Burgen und Weinbergen – das Buch unserer Heimatredaktion, 224 Seiten, jetzt für 19,90 Euro
Der Rheinblick-Wandkalender 2026 mit den schönsten Leserfotos – solange der Vorrat reicht
Rheinblick Plus: Alle Artikel, das E-Paper und das Archiv für 9,99 Euro im Monat, im ersten Monat kostenlos

Stellenmarkt
{jobs}
Alle Stellenangebote der Region finden Sie im Rheinblick-Stellenmarkt.

Kommentare
Wir freuen uns über Ihre Meinung zum Artikel „{title}“. Bitte beachten Sie unsere Netiquette: Beiträge werden vor der Veröffentlichung von der Redaktion geprüft. Beleidigungen, Werbung und Kommentare ohne Bezug zum Thema werden nicht freigeschaltet. Die Kommentarfunktion ist werktags von 8 bis 20 Uhr geöffnet. Mit dem Absenden akzeptieren Sie unsere Nutzungsbedingungen.

Anzeige
Ferienwohnungen an Mosel und Lahn – jetzt mit Frühbucherrabatt buchen.

Rheinblick Digital ist ein Angebot der Rheinblick Medien GmbH & Co. KG, Koblenz.
© 2026 Rheinblick Medien. Alle Rechte vorbehalten. Vervielfältigung nur mit Genehmigung.
Impressum | Datenschutz | AGB | Cookie-Einstellungen | Kontakt | Mediadaten | Barrierefreiheit""",
    },
    "kikompass": {
        "name": "KI-Kompass",
        "lang": "de",
        "host": "ki-kompass.net",
        "url": "/{year}/{month}/{slug}/",
        "header": [
            "KI-Kompass – Nachrichten über Künstliche Intelligenz",
            "News",
            "Forschung",
            "Tools & Modelle",
            "Recht & Politik",
            "Karriere",
            "Newsletter",
            "Über uns",
        ],
        "byline": "{date_de} | {author} | KI-News",
        "inline": [],
        "jobs": [
            "Machine Learning Engineer (m/w/d) Computer Vision – Remote oder Karlsruhe",
            "Werkstudent*in Data Engineering im Versicherungsumfeld (20 Std./Woche)",
            "Referent:in KI-Governance und Compliance (m/w/d) bei einem Landesministerium",
            "Senior Data Scientist Forecasting (all genders) – Logistikkonzern, Hamburg",
            "Duales Studium Angewandte Informatik mit Schwerpunkt KI 2026 (m/w/d)",
        ],
        "footer": """- Unsere Buchtipps: die besten Bücher über Künstliche Intelligenz und Robotik
- KI-Kompass Briefing: einmal pro Woche alle KI-News kostenlos ins Postfach
- Zur Startseite von KI-Kompass für aktuelle Meldungen
- KI-Kompass auf Steady unterstützen und werbefrei lesen
- Offene KI-Jobs in Deutschland, Österreich und der Schweiz entdecken
Aktuelle Stellenangebote
{jobs}
Buchempfehlung der Redaktion: „Maschinen, die zuhören – Sprachmodelle verständlich erklärt“. Die Autorin zeigt ohne Formeln, wie große Sprachmodelle entstehen, wo ihre Grenzen liegen und was Unternehmen vor dem Einsatz wissen sollten. Jetzt im Handel und als Hörbuch.
Sie möchten etwas zum Beitrag „{title}“ ergänzen?
Alle Kommentare werden vor der Freischaltung gelesen.
Wir behalten uns vor, Kommentare zu entfernen, die am Thema vorbeigehen, Werbung enthalten oder andere Leserinnen, Leser oder Autoren herabsetzen. Bitte diskutieren Sie so, wie Sie es auch am Tisch mit echten Menschen tun würden. Die große Mehrheit unserer Leserschaft möchte sachlich über Technik und ihre Folgen sprechen, und diese Diskussion wollen wir schützen.
Keine Meldung mehr verpassen?
Wenn Sie über weitere Beiträge wie „{title}“ informiert werden möchten, abonnieren Sie den Feed dieses Artikels oder unseren RSS-Hauptfeed. KI-Kompass finden Sie außerdem bei Google News und Bing News.
Weiterlesen zum Thema: »{title}« in der Suchmaschine Ihrer Wahl nachschlagen.
© 2026 KI-Kompass · Impressum · Datenschutz · Transparenzhinweis: Einige Links sind Affiliate-Links.""",
    },
    "mainufer": {
        "name": "Mainufer Rundschau",
        "lang": "de",
        "host": "www.mainufer-rundschau.de",
        "url": "/{section}/{slug}-a{num}/",
        "header": [
            "Mainufer Rundschau",
            "Nachrichten",
            "Frankfurt & Region",
            "Politik",
            "Wirtschaft",
            "Sport",
            "Freizeit",
            "Service",
            "Traueranzeigen",
            "Abo",
            "Login",
        ],
        "byline": "{author} · {date_de} · {time_de} Uhr",
        "inline": [
            "ANZEIGE",
            "Mehr zum Thema im Dossier unserer Redaktion",
        ],
        "jobs": [
            "Kaufmännische/r Angestellte/r (m/w/d) im Anzeigenservice, Teilzeit, Offenbach",
            "Volontariat Journalismus 2026 (m/w/d) – Bewerbungsschluss 31. März",
            "Fotograf/in (m/w/d) auf Honorarbasis für Sport und Lokales im Main-Kinzig-Kreis",
            "Account Manager (m/w/d) Digitale Werbung – Frankfurt am Main",
            "Mitarbeiter/in Leserservice (m/w/d) mit Schwerpunkt Telefon und Chat",
        ],
        "mostread": [
            "Meistgelesen: Neue Tempo-30-Zonen in Sachsenhausen – die Übersicht",
            "Meistgelesen: Wo es in der Region noch bezahlbare Bauplätze gibt",
            "Meistgelesen: Apfelwein-Test 2026 – das sind die Sieger unserer Jury",
            "Meistgelesen: Sperrung der S-Bahn-Tunnels an drei Wochenenden",
            "Meistgelesen: So wird das Wetter am Wochenende im Rhein-Main-Gebiet",
            "Meistgelesen: Neues Hallenbad in Offenbach öffnet später als geplant",
        ],
        "footer": """Teilen Sie „{title}“ mit Freunden: per E-Mail, WhatsApp oder in sozialen Netzwerken.
Artikel drucken | Fehler melden | Leserbrief schreiben

{mostread}

Rundschau kompakt: Der Abendnewsletter
Was heute in Frankfurt, Offenbach, Hanau und der Welt passiert ist – jeden Abend um 18 Uhr in Ihrem Postfach. Kostenlos und jederzeit kündbar.

Leserreisen mit der Rundschau
Flusskreuzfahrt von Frankfurt nach Amsterdam: sieben Tage mit Landausflügen, Vollpension und Reiseleitung ab 1.290 Euro pro Person. Adventsfahrt zum Weihnachtsmarkt nach Straßburg mit Busabholung in der ganzen Region.

Das Rundschau-Buch
„Frankfurter Geschichten – 75 Jahre in Bildern“: der Bildband zum Jubiläum, 180 Seiten, erhältlich in allen Geschäftsstellen und im Online-Shop.

Jobs bei der Rundschau und in der Region
{jobs}
Weitere Angebote finden Sie in unserem Stellenmarkt.

Hinweis zu Kommentaren
Die Kommentarspalte ist ein Ort für Austausch. Wir moderieren alle Beiträge und löschen Kommentare, die beleidigen, diskriminieren oder nichts mit dem Thema zu tun haben. Wiederholte Verstöße führen zur Sperrung des Kontos. Nutzen Sie bitte Ihren echten Namen.

Mainufer Rundschau – unabhängig seit 1949
© Mainufer Verlagsgesellschaft mbH 2026 · Impressum · Datenschutzerklärung · Nutzungsbedingungen · Privatsphäre-Einstellungen · Kontakt · Jobs""",
    },
    "hanse": {
        "name": "Hanse Depesche",
        "lang": "de",
        "host": "www.hanse-depesche.de",
        "url": "/nachrichten/{section}/{slug}-{num}",
        "header": [
            "HANSE DEPESCHE",
            "Hamburg",
            "Norddeutschland",
            "Politik",
            "Wirtschaft",
            "Hafen & Schiff",
            "Wissen",
            "Sport",
            "Meinung",
            "Podcast",
            "Digitalabo",
            "Mein Konto",
        ],
        "byline": "{date_de}, {time_de} Uhr · Ein Artikel von {author}",
        "inline": [
            "Dieser Artikel wird Ihnen präsentiert von Hanse Depesche Plus.",
        ],
        "jobs": [
            "Schiffsmakler-Assistenz (m/w/d) in der HafenCity – Vollzeit",
            "Online-Redakteur/in Newsdesk (m/w/d) im Schichtdienst, Hamburg",
            "Verkaufsberater/in Abonnement (m/w/d) auf Provisionsbasis",
            "Junior Produktmanager/in Apps (m/w/d) – iOS und Android",
            "Buchhalter/in (m/w/d) für unsere Verlagsgruppe in Teilzeit",
        ],
        "mostread": [
            "Meistgelesen: Die besten Fischbrötchen der Stadt – unser großer Test",
            "Meistgelesen: Neue Elbbrücke – wann die Bauarbeiten wirklich beginnen",
            "Meistgelesen: Mieten in Hamburg steigen erneut, vor allem in Barmbek",
            "Meistgelesen: Sturmflutsaison – was Anwohner an der Elbe wissen müssen",
            "Meistgelesen: Der HVV erhöht die Preise für Einzelfahrkarten",
            "Meistgelesen: Welche Strände an der Ostsee Hunde erlauben",
        ],
        "footer": """Artikel teilen: {title}
Facebook · LinkedIn · E-Mail · Link kopieren

Auch interessant für Sie
{mostread}
Alle Nachrichten aus dem Norden finden Sie jederzeit auf unserer Startseite und in der App der Hanse Depesche, die es kostenlos für iOS und Android gibt.

Das Beste aus dem Norden – jeden Morgen
Mit dem Newsletter „Moin Depesche“ erhalten Sie jeden Morgen um 6.30 Uhr die wichtigsten Nachrichten aus Hamburg und Norddeutschland. Jetzt kostenlos abonnieren.

Aus unserem Shop
Das Hafenbuch: 100 Schiffe, die Hamburg prägten – Hardcover, 29,95 Euro
Die Depesche-Tasse mit Leuchtturm-Motiv für nur 12 Euro
Hanse Depesche digital: alle Inhalte, E-Paper ab 5 Uhr und Podcast ohne Werbung – die ersten vier Wochen für 1 Euro

Jobs im Norden
{jobs}

Diskutieren Sie mit
Sie möchten Ihre Meinung zu „{title}“ sagen? Kommentieren können alle registrierten Abonnentinnen und Abonnenten. Wir lesen jeden Kommentar, bevor er erscheint. Beiträge ohne Bezug zum Artikel, mit Beleidigungen oder mit werblichen Links werden nicht veröffentlicht. Ein Anspruch auf Veröffentlichung besteht nicht.

Hanse Depesche ist Mitglied im Deutschen Presserat und folgt dem Pressekodex.
© 2026 Hanse Depesche Verlag GmbH, Hamburg · Impressum · Datenschutz · Cookie-Richtlinie · Kündigen · Hilfe""",
    },
    "donaublatt": {
        "name": "Donaublatt",
        "lang": "de",
        "host": "www.donaublatt.at",
        "url": "/{section}/{num}/{slug}",
        "header": [
            "Donaublatt",
            "Österreich",
            "Wien",
            "Bundesländer",
            "Wirtschaft",
            "Welt",
            "Sport",
            "Kultur",
            "Meinung",
            "ePaper",
            "Abo",
            "Login",
        ],
        "byline": "{author} | {date_de}, {time_de}",
        "inline": [
            "Mehr zum Thema: Wie teuer das Pendeln zwischen Wien und Niederösterreich wirklich ist",
            "Mehr zum Thema: Die besten Heurigen am Stadtrand im Überblick",
            "Mehr zum Thema: Was die neue Parkpickerl-Regel für Bezirke außerhalb des Gürtels bedeutet",
        ],
        "jobs": [
            "Redakteurin/Redakteur Chronik (m/w/d) – Wien, 38,5 Stunden",
            "Anzeigenverkauf Bundesländer (m/w/d) mit Dienstwagen",
            "Lehrling Medienfachmann/-frau (m/w/d) ab September",
            "Data Analyst (m/w/d) Leserforschung, Teilzeit möglich",
            "Assistenz der Chefredaktion (m/w/d), Karenzvertretung",
        ],
        "footer": """Teilen: {title}
Facebook | WhatsApp | E-Mail | Drucken

Der Donaublatt-Frühdienst
Von Montag bis Samstag um 6.30 Uhr: was in Österreich und der Welt wichtig ist, von unserer Frühredaktion ausgewählt. Kostenlos und jederzeit abbestellbar.

Donaublatt-Shop
Wiener Kaffeehäuser – 60 Porträts aus 250 Jahren, gebunden, 29,90 Euro
Das Donaublatt-Jahrbuch 2026 mit allen Wahlergebnissen und Statistiken
Donaublatt Digital: alle Artikel und das ePaper um 12,90 Euro im Monat, die ersten vier Wochen gratis

Karriere
{jobs}
Weitere Stellen finden Sie im Donaublatt-Jobportal.

Forum
Ihre Meinung zu „{title}“ ist uns wichtig. Postings werden vor der Freischaltung geprüft. Bitte halten Sie sich an unsere Forenregeln: keine Beschimpfungen, keine Werbung, kein Thema verfehlt. Die Redaktion behält sich vor, Postings ohne Angabe von Gründen zu löschen. Das Forum ist täglich von 7 bis 22 Uhr geöffnet.

Offenlegung gemäß Mediengesetz: Donaublatt Zeitungsverlag GmbH, Wien.
© 2026 Donaublatt. Alle Rechte vorbehalten.
Impressum | Datenschutz | AGB | Cookies | Kontakt | Werben""",
    },
    "ledger": {
        "name": "The Ledger Wire",
        "lang": "en",
        "host": "www.ledgerwire.com",
        "url": "/{section}/{year}/{month}/{day}/{slug}",
        "header": [
            "The Ledger Wire",
            "Home",
            "World",
            "UK",
            "Business",
            "Markets",
            "Technology",
            "Sport",
            "Opinion",
            "Podcasts",
            "Subscribe",
            "Sign in",
        ],
        "byline": "By {author} | {date_en} {time_en} GMT",
        "inline": [
            "Advertisement",
            "Story continues below",
        ],
        "jobs": [
            "Senior Markets Reporter, London – full time, hybrid",
            "Data Visualisation Developer (D3, Python) – Manchester or remote",
            "Commercial Partnerships Manager, Events – 12-month contract",
            "Graduate Scheme: Business Journalism 2026 – applications now open",
            "Site Reliability Engineer, Publishing Platform – London",
        ],
        "footer": """You are reading: {title}
Share this article: Email | LinkedIn | X | Copy link

The Ledger Briefing
Start every weekday with the five stories that matter for markets, business and politics, written by our editors and delivered at 6am. Sign up free – unsubscribe at any time.

From the Ledger Bookshop
"Money in Motion: A Short History of Modern Markets" – our chief economics commentator's bestseller, now in paperback
"The Ledger Guide to Personal Finance 2026" – pensions, tax and savings explained in plain English
Gift a subscription: twelve months of unlimited access for the price of ten

Careers at The Ledger and our partners
{jobs}
See all vacancies on Ledger Jobs.

Community guidelines
We welcome your comments on "{title}". Comments are reviewed before they appear. We remove comments that are abusive, off-topic, promotional or that make claims we cannot verify about named individuals. Please keep the discussion civil and on the subject of the article. Read our full community standards.

The Ledger Wire is published by Ledger Wire Media Ltd, registered in England and Wales.
Copyright 2026 Ledger Wire Media Ltd. All rights reserved.
About us | Contact | Terms | Privacy notice | Cookie settings | Accessibility | Advertise with us""",
    },
    "northgate": {
        "name": "Northgate Tech Daily",
        "lang": "en",
        "host": "northgatetech.co.uk",
        "url": "/news/{slug}-{num}",
        "header": [
            "NORTHGATE TECH DAILY",
            "News",
            "Reviews",
            "Cloud",
            "Security",
            "AI",
            "Space",
            "Deals",
            "Newsletter",
            "Events",
        ],
        "byline": "{author} · {date_en} · {minutes} min read",
        "inline": [
            "Related: Best laptops for students in 2026, tested and ranked",
            "Related: How to choose a password manager that will not lock you out",
        ],
        "jobs": [
            "Cloud Security Architect – Leeds, £85k to £95k",
            "Junior Reviewer, Consumer Hardware – Northgate Tech Daily, London",
            "Embedded Firmware Engineer (Rust) – Cambridge scale-up",
            "Head of Developer Relations – fintech, remote UK",
            "QA Automation Engineer – e-commerce platform, Bristol",
        ],
        "footer": """Tags: news · {section_label}
Comments on "{title}"
Join the conversation. All comments are pre-moderated by our editors and usually appear within a few hours. We will not publish comments that are abusive, that contain personal data, that advertise products, or that have nothing to do with the story. Repeat offenders will be banned. Be kind – there is a person on the other side of the screen.

Get Northgate Daily in your inbox
Our free newsletter rounds up the day's tech news, the best reviews and the deals worth your money. One email, every weekday at noon.

Northgate Recommends
"Patch Tuesday Forever: Inside the Unglamorous World of Software Maintenance" – the book our editors keep lending to each other
The Northgate Buyer's Guide 2026: 150 products tested in our lab
Northgate Pro: ad-free reading, long-form features and early access to reviews for £4 a month

Tech jobs this week
{jobs}
Browse hundreds more roles on Northgate Jobs.

Northgate Tech Daily is part of Northgate Media Group. We may earn a commission when you buy through links on our site.
© 2026 Northgate Media Group Ltd. All rights reserved.
Privacy | Cookies | Terms of use | Contact the newsroom | Send us a tip | Sitemap""",
    },
    "harbourside": {
        "name": "Harbourside Gazette",
        "lang": "en",
        "host": "www.harbourside-gazette.co.uk",
        "url": "/news/{section}/{num}.{slug}",
        "header": [
            "Harbourside Gazette",
            "News",
            "Local",
            "Business",
            "Sport",
            "What's On",
            "Property",
            "Jobs",
            "Announcements",
            "E-edition",
            "Log in",
        ],
        "byline": "{author}, Reporter · {date_en} {time_en}",
        "inline": [
            "Sign up to our daily newsletter",
        ],
        "jobs": [
            "Care Assistant, night shifts – Seabrook Lodge, competitive pay",
            "Delivery Driver (7.5t licence) – Portside Distribution",
            "Trainee Reporter, Harbourside Gazette – NCTJ scheme",
            "Harbour Pilot Boat Crew – seasonal contract",
            "Primary Teacher, Year 4 – maternity cover from April",
        ],
        "mostread": [
            "Most read: Parking charges to rise at seafront car parks from April",
            "Most read: Five of the best fish and chip shops on our stretch of coast",
            "Most read: New primary school plans approved despite objections",
            "Most read: Roadworks on the coast road – what you need to know",
            "Most read: Harbourside's oldest pub changes hands after 40 years",
            "Most read: Weather warning issued as gales forecast for the weekend",
        ],
        "footer": """Have your say on "{title}"
Comments are open to registered readers. Our moderators check every comment before it is published and will remove anything abusive, defamatory or off-topic, as well as anything that could prejudice court proceedings. Please read our house rules before posting.

{mostread}

Want more local news? Get the Gazette Daily free in your inbox every morning, plus breaking news alerts when big stories happen in your area.

Gazette Shop
"Harbourside Then and Now" – 120 pages of archive photographs from our picture desk, £14.99
Gazette family notices: place a birth, marriage or death announcement online in minutes
Print edition delivered to your door from £2.20 a week

Local jobs
{jobs}
Find more jobs near you on Gazette Jobs.

Do you have a story for us? Email the newsroom or message us on WhatsApp.
Harbourside Gazette is a member of the Independent Press Standards Organisation. If you have a complaint about editorial content, please contact us first.
© 2026 Harbourside Gazette Publishing Ltd. All rights reserved.
Contact us | Advertise | Privacy | Cookies | Terms | Complaints | Site map""",
    },
}

GOOGLE_HOSTS = {
    # publisher homepages for Google/Bing entries whose article is not in the corpus
}

SECTION_LABELS = {
    "politik": "Politik",
    "wirtschaft": "Wirtschaft",
    "region": "Region",
    "sport": "Sport",
    "digital": "Digital",
    "wissen": "Wissen",
    "wien": "Wien",
    "oesterreich": "Österreich",
    "kultur": "Kultur",
    "ki": "KI",
    "world": "World",
    "uk": "UK",
    "business": "Business",
    "markets": "Markets",
    "technology": "Technology",
    "tech": "Technology",
    "cloud": "Cloud",
    "space": "Space",
    "science": "Science",
    "security": "Security",
    "local": "Local",
    "sport-en": "Sport",
}

MONTHS_DE = [
    "Januar",
    "Februar",
    "März",
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
]
MONTHS_EN = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def slugify(text: str) -> str:
    text = (
        text.replace("ä", "ae")
        .replace("ö", "oe")
        .replace("ü", "ue")
        .replace("ß", "ss")
        .replace("Ä", "Ae")
        .replace("Ö", "Oe")
        .replace("Ü", "Ue")
    )
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-zA-Z0-9]+", "-", text.lower()).strip("-")
    words = text.split("-")
    return "-".join(words[:9])


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def stable_int(key: str, lo: int, hi: int) -> int:
    h = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return lo + h % (hi - lo + 1)


def rng_for(key: str) -> random.Random:
    return random.Random(f"{SEED}:{key}")


# --------------------------------------------------------------------------------------------
# Source parsing
# --------------------------------------------------------------------------------------------


def parse_source(path: Path) -> list[dict]:
    blocks: list[dict] = []
    cur: dict | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if raw.startswith("@@ "):
            tokens = shlex.split(raw[3:])
            kind, rest = tokens[0], tokens[1:]
            attrs: dict[str, str | bool] = {}
            for tok in rest:
                if "=" in tok:
                    k, v = tok.split("=", 1)
                    attrs[k] = v
                else:
                    attrs[tok] = True
            cur = {"kind": kind, "attrs": attrs, "lines": []}
            blocks.append(cur)
        elif raw.startswith("%%"):
            continue  # comment line
        elif cur is not None:
            cur["lines"].append(raw)
    for b in blocks:
        lines = b.pop("lines")
        while lines and not lines[0].strip():
            lines.pop(0)
        title = None
        if lines and lines[0].startswith("# "):
            title = lines.pop(0)[2:].strip()
        edits = [ln for ln in lines if ln.startswith("s|")]
        body_lines = [ln for ln in lines if not ln.startswith("s|")]
        text = "\n".join(body_lines).strip()
        paras = [
            re.sub(r"\s*\n\s*", " ", p).strip() for p in re.split(r"\n\s*\n", text) if p.strip()
        ]
        b["title"] = title
        b["paras"] = paras
        b["edits"] = [tuple(e[2:].split("|", 1)) for e in edits]
    return blocks


# --------------------------------------------------------------------------------------------
# Item construction
# --------------------------------------------------------------------------------------------


def article_url(outlet: dict, key: str, title: str, section: str, dt: datetime) -> str:
    path = outlet["url"].format(
        section=section,
        slug=slugify(title),
        num=stable_int(key, 100000, 999999),
        year=f"{dt.year:04d}",
        month=f"{dt.month:02d}",
        day=f"{dt.day:02d}",
    )
    return f"https://{outlet['host']}{path}"


def render_page(
    outlet: dict, key: str, title: str, paras: list[str], section: str, author: str, dt: datetime
) -> str:
    rng = rng_for("chrome:" + key)
    label = SECTION_LABELS.get(section, section.capitalize())
    words = sum(len(p.split()) for p in paras)
    fmt = {
        "section_label": label,
        "title": title,
        "author": author,
        "date_de": f"{dt.day:02d}.{dt.month:02d}.{dt.year}",
        "time_de": f"{dt.hour:02d}:{dt.minute:02d}",
        "date_en": f"{dt.day} {MONTHS_EN[dt.month - 1]} {dt.year}",
        "time_en": f"{dt.hour:02d}:{dt.minute:02d}",
        "minutes": max(2, round(words / 200)),
    }
    header = [line.format(**fmt) for line in outlet["header"]]
    body = list(paras)
    if outlet["inline"] and len(body) >= 3:
        pos = rng.randint(2, len(body) - 1)
        body.insert(pos, rng.choice(outlet["inline"]))
    jobs = rng.sample(outlet["jobs"], 2)
    fmt["jobs"] = "\n".join(jobs)
    fmt["mostread"] = "\n".join(
        rng.sample(outlet.get("mostread", []), min(3, len(outlet.get("mostread", []))))
    )
    footer = outlet["footer"].format(**fmt)
    parts = ["\n".join(header), title, outlet["byline"].format(**fmt), "\n\n".join(body), footer]
    return "\n\n".join(parts)


def google_url(key: str) -> str:
    rng = rng_for("gn:" + key)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    token = "".join(rng.choice(alphabet) for _ in range(rng.randint(96, 160)))
    return f"https://news.google.com/rss/articles/CBMi{token}?oc=5"


def google_summary(url: str, headline: str, publisher: str) -> str:
    return (
        f'<a href="{url}" target="_blank">{headline}</a>'
        f'&nbsp;&nbsp;<font color="#6f6f6f">{publisher}</font>'
    )


def bing_url(key: str, target: str, lang: str) -> str:
    rng = rng_for("bing:" + key)
    tid = "".join(rng.choice("0123456789ABCDEF") for _ in range(32))
    c = "".join(rng.choice("0123456789") for _ in range(19))
    mkt = "de-de" if lang == "de" else "en-gb"
    return (
        "https://www.bing.com/news/apiclick.aspx?ref=FexRss&aid=&tid="
        f"{tid}&url={quote(target, safe='')}&c={c}&mkt={mkt}"
    )


def external_url(publisher: str, headline: str, key: str, host: str | None, lang: str) -> str:
    if not host:
        base = slugify(publisher).replace("-", "")
        host = f"www.{base}.{'de' if lang == 'de' else 'com'}"
    section = "artikel" if lang == "de" else "news"
    return f"https://{host}/{section}/{slugify(headline)}-{stable_int(key, 1000, 99999)}"


def variant_url(url: str, mode: str, key: str) -> str:
    scheme, rest = url.split("://", 1)
    host, _, path = rest.partition("/")
    path = "/" + path
    if mode == "utm":
        return f"{url}?utm_source=rss&utm_medium=feed&utm_campaign=newsfeed"
    if mode == "newsletter":
        return f"{url}?utm_source=newsletter&utm_medium=email&utm_campaign=morning_{stable_int(key, 100, 999)}#comments"
    if mode == "fbclid":
        token = hashlib.md5(key.encode()).hexdigest()
        return f"{url}?fbclid=IwAR{token[:24]}&utm_medium=social"
    if mode == "m":
        bare = host[4:] if host.startswith("www.") else host
        return f"https://m.{bare}{path}"
    if mode == "amp":
        if path.endswith("/"):
            return f"https://{host}{path}amp/"
        if path.endswith(".html"):
            return f"https://{host}{path[:-5]}.amp.html"
        return f"https://{host}/amp{path}"
    if mode == "http":
        return f"http://{host}{path}"
    raise ValueError(mode)


def build_split(split: str) -> tuple[list[dict], list[dict]]:
    blocks = parse_source(HERE / "source" / f"{split}.txt")
    items: list[dict] = []
    labels: dict[str, dict] = {}
    articles: dict[str, dict] = {}  # key -> built site item (+meta)
    counter = Counter()

    def add(key: str, item: dict, dup: str, story: str, thread: str, attrs: dict) -> None:
        if key in labels:
            raise SystemExit(f"{split}: duplicate key {key}")
        if attrs.get("nolang"):
            item.pop("lang", None)
        if attrs.get("nodate"):
            item.pop("published", None)
        item["_key"] = key
        items.append(item)
        labels[key] = {"dup_group": dup, "story": story, "thread": thread}

    parts: list[tuple[str, int]] = []  # (part name, index of its first item)
    for b in blocks:
        a = b["attrs"]
        kind = b["kind"]
        if kind == "part":
            parts.append((a["name"], len(items)))
            continue
        if kind == "site":
            key = a["key"]
            outlet = OUTLETS[a["outlet"]]
            dt = parse_time(a["time"])
            section = a.get("section", "politik")
            author = a.get("author", "Redaktion")
            url = article_url(outlet, key, b["title"], section, dt)
            text = render_page(outlet, key, b["title"], b["paras"], section, author, dt)
            summary = b["paras"][0]
            if a["outlet"] == "kikompass":
                words = " ".join(b["paras"]).split()
                summary = (
                    " ".join(words[:42])
                    + f" […]\nDer Beitrag {b['title']} erschien zuerst auf KI-Kompass."
                )
            item = {
                "source": outlet["name"],
                "feed_kind": "site",
                "lang": outlet["lang"],
                "title": b["title"],
                "summary": summary,
                "text": text,
                "url": url,
                "published": iso(dt),
            }
            story = a.get("story", f"{split}:{key}")
            thread = a.get("thread", story)
            articles[key] = {
                "item": item,
                "dup": key,
                "story": story,
                "thread": thread,
                "paras": b["paras"],
                "outlet": a["outlet"],
                "dt": dt,
                "section": section,
                "words": sum(len(p.split()) for p in b["paras"]),
            }
            add(key, dict(item), key, story, thread, a)
        elif kind == "copy":
            key = a["key"]
            src = articles[a["of"]]
            outlet = OUTLETS[a["outlet"]]
            dt = parse_time(a["time"])
            paras = list(src["paras"])
            for old, new in b["edits"]:
                joined = "\n\n".join(paras)
                if old not in joined:
                    raise SystemExit(f"{split}: edit {old!r} not found in {a['of']}")
                paras = joined.replace(old, new, 1).split("\n\n")
            section = a.get("section", src["section"])
            title = b["title"] or src["item"]["title"]
            url = article_url(outlet, key, title, section, dt)
            text = render_page(outlet, key, title, paras, section, a.get("author", "dpn"), dt)
            item = {
                "source": outlet["name"],
                "feed_kind": "site",
                "lang": outlet["lang"],
                "title": title,
                "summary": paras[0],
                "text": text,
                "url": url,
                "published": iso(dt),
            }
            articles[key] = {
                "item": item,
                "dup": src["dup"],
                "story": src["story"],
                "thread": src["thread"],
                "paras": paras,
                "outlet": a["outlet"],
                "dt": dt,
                "section": section,
                "words": sum(len(p.split()) for p in paras),
            }
            add(key, dict(item), src["dup"], src["story"], src["thread"], a)
        elif kind == "variant":
            src = articles[a["of"]]
            counter[a["of"]] += 1
            key = f"{a['of']}~{a['mode']}"
            item = dict(src["item"])
            item["url"] = variant_url(item["url"], a["mode"], key)
            if "time" in a:
                item["published"] = iso(parse_time(a["time"]))
            add(key, item, src["dup"], src["story"], src["thread"], a)
        elif kind in ("google", "bing"):
            if "of" in a:
                src = articles[a["of"]]
                key = f"{a['of']}~{kind}"
                publisher = src["item"]["source"]
                headline = b["title"] or src["item"]["title"]
                lang = src["item"]["lang"]
                target = src["item"]["url"]
                if a.get("target") == "utm":
                    target = variant_url(target, "utm", key)
                snippet = src["paras"][0]
                if len(snippet.split()) > 32:
                    snippet = " ".join(snippet.split()[:30]) + " …"
                dt = (
                    parse_time(a["time"])
                    if "time" in a
                    else src["dt"] + timedelta(minutes=stable_int(key, 5, 240))
                )
                dup, story, thread = src["dup"], src["story"], src["thread"]
            else:
                key = a["key"]
                publisher = a["publisher"]
                headline = b["title"]
                lang = a.get("lang", "de")
                target = external_url(publisher, headline, key, a.get("host"), lang)
                snippet = " ".join(b["paras"])
                dt = parse_time(a["time"])
                if "dup" in a:
                    if a["dup"] not in labels or "story" in a or "thread" in a:
                        raise SystemExit(f"{split}: {key}: dup= needs an earlier key, no story=")
                    if a["dup"] in articles and headline != articles[a["dup"]]["item"]["title"]:
                        raise SystemExit(f"{split}: {key}: a wire copy repeats the headline")
                    dup, story, thread = (
                        labels[a["dup"]][f] for f in ("dup_group", "story", "thread")
                    )
                else:
                    story = a.get("story", f"{split}:{key}")
                    thread = a.get("thread", story)
                    dup = key
            if kind == "google":
                url = google_url(key)
                item = {
                    "source": publisher,
                    "feed_kind": "google_news",
                    "lang": lang,
                    "title": f"{headline} - {publisher}",
                    "summary": google_summary(url, headline, publisher),
                    "text": "",
                    "url": url,
                    "published": iso(dt.astimezone(_UTC)),
                }
            else:
                if not snippet:
                    raise SystemExit(f"{split}: bing item {key} needs a snippet")
                item = {
                    "source": publisher,
                    "feed_kind": "bing_news",
                    "lang": lang,
                    "title": headline,
                    "summary": snippet,
                    "text": "",
                    "url": bing_url(key, target, lang),
                    "published": iso(dt.astimezone(_UTC)),
                }
            add(key, item, dup, story, thread, a)
        else:
            raise SystemExit(f"{split}: unknown block kind {kind}")

    # deterministic shuffle per part, then opaque sequential ids
    bounds = [("", 0), *parts, ("", len(items))]
    shuffled: list[dict] = []
    for (name, start), (_, end) in zip(bounds, bounds[1:], strict=False):
        chunk = items[start:end]
        random.Random(f"{SEED}:{split}:order" + (f":{name}" if name else "")).shuffle(chunk)
        shuffled.extend(chunk)
    items = shuffled
    out_items, out_labels = [], []
    for n, item in enumerate(items, 1):
        key = item.pop("_key")
        iid = f"{split}-{n:03d}"
        ordered = {"id": iid}
        for field in (
            "source",
            "feed_kind",
            "lang",
            "title",
            "summary",
            "text",
            "url",
            "published",
        ):
            if field in item:
                ordered[field] = item[field]
        out_items.append(ordered)
        lab = labels[key]
        out_labels.append(
            {
                "id": iid,
                "dup_group": f"{split}/{lab['dup_group']}",
                "story": f"{split}/{lab['story'].split(':')[-1]}",
                "thread": f"{split}/{lab['thread'].split(':')[-1]}",
                "_key": key,
                "_words": articles.get(key, {}).get("words"),
            }
        )
    return out_items, out_labels


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def load_jsonl(path: Path) -> list[dict]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def err(message: str) -> bool:
    print(message)
    return False


def validate(data_dir: Path) -> bool:
    ok = True
    all_ids: set[str] = set()
    totals = {}
    for split in ("dev", "test"):
        items = load_jsonl(data_dir / f"{split}.jsonl")
        labels = load_jsonl(data_dir / f"{split}.labels.jsonl")
        totals[split] = len(items)
        ids = [it["id"] for it in items]
        if len(set(ids)) != len(ids) or all_ids & set(ids):
            ok = err(f"ERROR {split}: duplicate ids")
        all_ids |= set(ids)
        lab = {x["id"]: x for x in labels}
        if set(lab) != set(ids) or len(labels) != len(items):
            ok = err(f"ERROR {split}: labels do not match items")
        byid = {it["id"]: it for it in items}
        for it in items:
            for f in ("id", "source", "feed_kind", "title", "summary", "text", "url"):
                if f not in it:
                    ok = err(f"ERROR {split}: {it['id']} lacks {f}")
            if it["feed_kind"] not in ("site", "google_news", "bing_news"):
                ok = err(f"ERROR {split}: bad feed_kind {it['id']}")
            if it["feed_kind"] != "site" and it["text"] != "":
                ok = err(f"ERROR {split}: aggregator entry with text {it['id']}")
            if "published" in it:
                dt = datetime.fromisoformat(it["published"])
                if dt.tzinfo is None:
                    ok = err(f"ERROR {split}: naive datetime {it['id']}")
        # nesting
        d2s, s2t = {}, {}
        for x in labels:
            for parent, child, m in (
                (x["story"], x["dup_group"], d2s),
                (x["thread"], x["story"], s2t),
            ):
                if m.setdefault(child, parent) != parent:
                    ok = err(f"ERROR {split}: {child} maps to {m[child]} and {parent}")
        # time windows
        by_story, by_thread = defaultdict(list), defaultdict(list)
        for x in labels:
            it = byid[x["id"]]
            if "published" in it:
                dt = datetime.fromisoformat(it["published"])
                by_story[x["story"]].append(dt)
                by_thread[x["thread"]].append(dt)
        for s, dts in by_story.items():
            if max(dts) - min(dts) > timedelta(hours=48):
                ok = err(f"ERROR {split}: story {s} spans {max(dts) - min(dts)}")
        for t, dts in by_thread.items():
            if max(dts) - min(dts) > timedelta(days=22):
                ok = err(f"ERROR {split}: thread {t} spans {max(dts) - min(dts)}")
        # summary
        kinds = Counter(it["feed_kind"] for it in items)
        langs = Counter(it.get("lang", "(missing)") for it in items)
        sources = Counter(it["source"] for it in items if it["feed_kind"] == "site")
        dups = Counter(x["dup_group"] for x in labels)
        stories = Counter(x["story"] for x in labels)
        threads = Counter(x["thread"] for x in labels)
        single = sum(1 for x in labels if threads[x["thread"]] == 1)
        multi_story_threads = sum(
            1 for t in threads if len({x["story"] for x in labels if x["thread"] == t}) > 1
        )
        nodate = sum(1 for it in items if "published" not in it)
        print(f"== {split}: {len(items)} items")
        print(f"   feed_kind: {dict(kinds)}")
        print(f"   lang: {dict(langs)}; missing published: {nodate}")
        print(f"   site items per outlet: {dict(sources)}")
        print(f"   dup groups: {len(dups)} ({sum(1 for v in dups.values() if v > 1)} with >1 item)")
        print(
            f"   stories: {len(stories)} ({sum(1 for v in stories.values() if v > 1)} with >1 item)"
        )
        print(f"   threads: {len(threads)} ({multi_story_threads} with >1 story)")
        print(f"   singleton items (alone in their thread): {single} ({single / len(items):.0%})")
        dates = sorted(datetime.fromisoformat(it["published"]) for it in items if "published" in it)
        print(f"   published range: {dates[0].date()} .. {dates[-1].date()}")
    n = sum(totals.values())
    print(f"== total {n} items; dev {totals['dev'] / n:.0%}, test {totals['test'] / n:.0%}")
    # different events in the two splits: no story/thread ids shared (ids are prefixed anyway),
    # and no site title shared
    dev_titles = {it["title"] for it in load_jsonl(data_dir / "dev.jsonl")}
    test_titles = {it["title"] for it in load_jsonl(data_dir / "test.jsonl")}
    if dev_titles & test_titles:
        ok = err(f"ERROR: titles shared between splits: {dev_titles & test_titles}")
    size = sum(
        (data_dir / f).stat().st_size
        for f in ("dev.jsonl", "test.jsonl", "dev.labels.jsonl", "test.labels.jsonl")
    )
    print(f"== size of the four files: {size / 1024:.0f} KiB")
    print("VALID" if ok else "INVALID")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only validate the written files")
    args = ap.parse_args()
    if not args.check:
        for split in ("dev", "test"):
            items, labels = build_split(split)
            short = [
                (x["_key"], x["_words"])
                for x in labels
                if x["_words"] is not None and not 150 <= x["_words"] <= 500
            ]
            for key, words in short:
                print(f"WARNING {split}: body of {key} has {words} words")
            with open(HERE / f"{split}.jsonl", "w", encoding="utf-8") as fh:
                for it in items:
                    fh.write(json.dumps(it, ensure_ascii=False) + "\n")
            with open(HERE / f"{split}.labels.jsonl", "w", encoding="utf-8") as fh:
                for x in labels:
                    clean = {k: v for k, v in x.items() if not k.startswith("_")}
                    fh.write(json.dumps(clean, ensure_ascii=False) + "\n")
    return 0 if validate(HERE) else 1


if __name__ == "__main__":
    sys.exit(main())
