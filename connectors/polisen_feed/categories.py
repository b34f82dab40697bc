"""Police event ``type`` → Samverkan Hub offence category.

The police's open events feed has an open, drifting ``type`` vocabulary (97 values observed 2023–2026).
Every observed value is listed explicitly in :data:`TYPE_CATEGORIES`; a value that is not listed is
*kept* (never rejected) as category ``other`` with ``known_type=False`` so it can be reviewed and added.

Most types map one-to-one. The burglary family needs the event text:

* ``Inbrott``, ``Inbrott, försök``, ``Larm Inbrott``: ``residential_burglary`` when the summary or name
  (with the type removed) mentions a dwelling (see :func:`mentions_dwelling`), otherwise ``other_burglary``.
* ``Stöld/inbrott``: ``residential_burglary`` when a dwelling is mentioned; otherwise
  ``other_burglary`` when the text speaks of a break-in (``inbrott``, ``brutit``, ``bryt…``, ``bröt``),
  otherwise ``theft`` (the police use this type for plain thefts too, e.g. "stöld ur en lastbil").

Groupings worth knowing: lethal violence (``Mord/dråp``) and violence against officials are ``assault``
(there is no separate homicide category); crimes against liberty and peace (Brottsbalken ch. 4: olaga hot,
ofredande, hemfridsbrott, olaga intrång, olaga frihetsberövande) and hate speech / bomb threats are
``threat_harassment``; suspected dangerous objects (suspected explosive devices) are ``shooting_explosion``;
road, sea and air transport law is ``traffic``; arson is ``fire``. The feed has no type that identifies
``domestic_violence``; that category is reserved for other sources.

:func:`category_table_markdown` renders the table kept in ``docs/polisen-feed.md`` between the
:data:`TABLE_BEGIN` / :data:`TABLE_END` markers; :func:`replace_table_block` rewrites that block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, NamedTuple

CATEGORIES: Final[tuple[str, ...]] = (
    "residential_burglary",
    "other_burglary",
    "theft",
    "robbery",
    "assault",
    "threat_harassment",
    "shooting_explosion",
    "weapons",
    "drugs",
    "vandalism",
    "fraud",
    "sexual_offence",
    "domestic_violence",
    "public_order",
    "traffic",
    "fire",
    "missing_person",
    "summary",
    "other",
)

#: Types whose category depends on the summary/name text (value: category when no keyword matches).
BURGLARY_TYPES: Final[frozenset[str]] = frozenset({"Inbrott", "Inbrott, försök", "Larm Inbrott"})
THEFT_OR_BURGLARY_TYPE: Final[str] = "Stöld/inbrott"

# (police type, base category, note). Order: as in polisen-event-types.csv (most frequent first).
_TABLE: Final[tuple[tuple[str, str, str], ...]] = (
    ("Trafikolycka", "traffic", ""),
    ("Sammanfattning natt", "summary", "county-level"),
    ("Brand", "fire", ""),
    ("Rattfylleri", "traffic", ""),
    ("Trafikkontroll", "traffic", ""),
    ("Övrigt", "other", "county-level"),
    ("Misshandel", "assault", ""),
    ("Stöld", "theft", ""),
    ("Trafikolycka, personskada", "traffic", ""),
    ("Trafikbrott", "traffic", ""),
    ("Sammanfattning kväll och natt", "summary", "county-level"),
    (
        "Stöld/inbrott",
        "theft",
        "residential_burglary if dwelling keyword; else other_burglary if break-in keyword; else theft",
    ),
    ("Arbetsplatsolycka", "other", "accident, not an offence"),
    ("Skadegörelse", "vandalism", ""),
    ("Rån", "robbery", ""),
    ("Fylleri/LOB", "public_order", ""),
    ("Trafikolycka, vilt", "traffic", ""),
    ("Försvunnen person", "missing_person", ""),
    ("Narkotikabrott", "drugs", ""),
    ("Trafikolycka, singel", "traffic", ""),
    ("Bedrägeri", "fraud", ""),
    ("Misshandel, grov", "assault", ""),
    ("Mord/dråp, försök", "assault", "lethal violence; no separate category"),
    ("Olaga hot", "threat_harassment", ""),
    ("Olovlig körning", "traffic", ""),
    ("Knivlagen", "weapons", ""),
    ("Våld/hot mot tjänsteman", "assault", ""),
    ("Bråk", "public_order", ""),
    ("Farligt föremål, misstänkt", "shooting_explosion", "suspected explosive device"),
    ("Inbrott", "other_burglary", "residential_burglary if dwelling keyword"),
    ("Fjällräddning", "other", "rescue"),
    ("Kontroll person/fordon", "other", ""),
    ("Mord/dråp", "assault", "lethal violence; no separate category"),
    ("Vapenlagen", "weapons", ""),
    ("Djur", "other", ""),
    ("Trafikolycka, smitning från", "traffic", ""),
    ("Trafikhinder", "traffic", ""),
    ("Motorfordon, stöld", "theft", ""),
    ("Räddningsinsats", "other", "rescue"),
    ("Stöld, försök", "theft", ""),
    ("Olaga intrång", "threat_harassment", "BrB ch. 4 (liberty and peace)"),
    ("Ofredande/förargelse", "threat_harassment", ""),
    ("Explosion", "shooting_explosion", ""),
    ("Anträffad död", "other", ""),
    ("Rån, försök", "robbery", ""),
    ("Fylleri", "public_order", ""),
    ("Åldringsbrott", "fraud", "mostly deception of elderly people"),
    ("Skottlossning", "shooting_explosion", ""),
    ("Våldtäkt", "sexual_offence", ""),
    ("Information", "other", ""),
    ("Polisinsats/kommendering", "other", ""),
    ("Häleri", "theft", "receiving stolen goods"),
    ("Motorfordon, anträffat stulet", "theft", ""),
    ("Detonation", "shooting_explosion", ""),
    ("Sexualbrott", "sexual_offence", ""),
    ("Rån övrigt", "robbery", ""),
    ("Kontroll", "other", ""),
    ("Vållande till kroppsskada", "other", "negligence, not intentional violence"),
    ("Inbrott, försök", "other_burglary", "residential_burglary if dwelling keyword"),
    ("Larm Överfall", "robbery", "hold-up alarm"),
    ("Sedlighetsbrott", "sexual_offence", ""),
    ("Uppdatering", "other", ""),
    ("Ordningslagen", "public_order", ""),
    ("Hemfridsbrott", "threat_harassment", "BrB ch. 4 (liberty and peace)"),
    ("Larm Inbrott", "other_burglary", "residential_burglary if dwelling keyword"),
    ("Sjukdom/olycksfall", "other", ""),
    ("Skyddslagen", "other", ""),
    ("Mordbrand", "fire", "arson"),
    ("Skottlossning, misstänkt", "shooting_explosion", ""),
    ("Alkohollagen", "public_order", ""),
    ("Rån väpnat", "robbery", ""),
    ("Anträffat gods", "other", ""),
    ("Efterlyst person", "other", "wanted person, not necessarily missing"),
    ("Smällar", "public_order", "fireworks/bangs"),
    ("Sabotage mot blåljusverksamhet", "public_order", ""),
    ("Sjölagen", "traffic", "transport law"),
    ("Olaga frihetsberövande/människorov", "threat_harassment", "BrB ch. 4 (liberty and peace)"),
    ("Miljöbrott", "other", ""),
    ("Våldtäkt, försök", "sexual_offence", ""),
    ("Luftfartslagen", "traffic", "transport law"),
    ("Utlänningslagen", "other", ""),
    ("Missbruk av urkund", "fraud", ""),
    ("Ekobrott", "fraud", ""),
    ("Brand automatlarm", "fire", ""),
    ("Hets mot folkgrupp", "threat_harassment", ""),
    ("Lagen om hundar och katter", "other", "feed value has a trailing space; types are stripped"),
    ("Sammanfattning dag", "summary", "county-level"),
    ("Sammanfattning kväll", "summary", "county-level"),
    ("Förfalskningsbrott", "fraud", ""),
    ("Varningslarm/haveri", "other", ""),
    ("Sammanfattning eftermiddag", "summary", "county-level"),
    ("Spridning smitta/kemikalier", "other", ""),
    ("Bombhot", "threat_harassment", ""),
    ("Upphittat föremål", "other", ""),
    ("Sammanfattning helg", "summary", "county-level"),
    ("Sammanfattning dygn", "summary", "county-level"),
    ("Sammanfattning vecka", "summary", "county-level"),
)

#: Base category per (whitespace-stripped) police type.
TYPE_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType({t: c for t, c, _ in _TABLE})
_NOTES: Final[Mapping[str, str]] = MappingProxyType({t: n for t, _, n in _TABLE})

#: Types that are never an incident in one municipality (always county-level).
COUNTY_LEVEL_TYPES: Final[frozenset[str]] = frozenset(
    t for t, c, _ in _TABLE if c == "summary" or t == "Övrigt"
)

# Dwelling keywords. A word (lower-cased, split on non-letters) mentions a dwelling when it CONTAINS one of
# the stems, or EQUALS one of the whole words. "hus" is whole-word only so that "husbil" does not match.
DWELLING_STEMS: Final[tuple[str, ...]] = (
    "bostad",
    "lägenhet",
    "villa",
    "radhus",
    "parhus",
    "kedjehus",
    "fritidshus",
    "sommarhus",
    "egnahem",
    "familjshus",
    "hyreshus",
    "stuga",
)
DWELLING_WORDS: Final[frozenset[str]] = frozenset({"hus", "huset", "hem", "hemma", "hemmet"})
# Break-in keywords (word contains one of these stems / starts with one of these prefixes).
BREAK_IN_STEMS: Final[tuple[str, ...]] = ("inbrott",)
BREAK_IN_PREFIXES: Final[tuple[str, ...]] = ("brutit", "bryt", "bröt")

_WORD = re.compile(r"[^\W\d_]+")


class Classification(NamedTuple):
    category: str
    known_type: bool


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def mentions_dwelling(text: str) -> bool:
    """True when ``text`` mentions a dwelling (bostad, lägenhet, villa, hus, hem, …)."""
    return any(w in DWELLING_WORDS or any(s in w for s in DWELLING_STEMS) for w in _words(text))


def mentions_break_in(text: str) -> bool:
    """True when ``text`` speaks of a break-in (inbrott, brutit sig in, bryter, bröt)."""
    return any(any(s in w for s in BREAK_IN_STEMS) or w.startswith(BREAK_IN_PREFIXES) for w in _words(text))


def classify(police_type: str, summary: str = "", name: str = "") -> Classification:
    """Category for a police ``type``; ``summary`` and ``name`` refine the burglary family.

    The type itself is removed from ``name`` before keyword matching (names are
    ``"<date time>, <type>, <place>"``, so "Stöld/inbrott" in the name says nothing about a break-in).
    Unknown types give ``Classification("other", known_type=False)``; they are never rejected.
    """
    key = police_type.strip()
    base = TYPE_CATEGORIES.get(key)
    if base is None:
        return Classification("other", False)
    if key not in BURGLARY_TYPES and key != THEFT_OR_BURGLARY_TYPE:
        return Classification(base, True)
    text = f"{summary} {name.replace(key, ' ')}"
    if mentions_dwelling(text):
        return Classification("residential_burglary", True)
    if key in BURGLARY_TYPES or mentions_break_in(text):
        return Classification("other_burglary", True)
    return Classification("theft", True)


def category_table_markdown() -> str:
    """The mapping table as Markdown (the block kept in ``docs/polisen-feed.md``)."""
    lines = [
        "| Police `type` | Category | Rule / note |",
        "|---|---|---|",
    ]
    for police_type, category, note in _TABLE:
        lines.append(f"| {police_type} | `{category}` | {note} |".replace("|  |", "| |"))
    lines.append("| *(any other value)* | `other` | kept, flagged `known_type=False` |")
    return "\n".join(lines) + "\n"


TABLE_BEGIN: Final = "<!-- BEGIN category-table (generated by category_table_markdown) -->"
TABLE_END: Final = "<!-- END category-table -->"


def replace_table_block(doc_text: str) -> str:
    """``doc_text`` with the block between :data:`TABLE_BEGIN` and :data:`TABLE_END` regenerated."""
    start = doc_text.find(TABLE_BEGIN)
    end = doc_text.find(TABLE_END)
    if start < 0 or end < start:
        raise ValueError("document has no category-table markers")
    head = doc_text[: start + len(TABLE_BEGIN)]
    return f"{head}\n{category_table_markdown()}{doc_text[end:]}"


def _check_table() -> None:
    bad = [t for t, c, _ in _TABLE if c not in CATEGORIES]
    if bad or len(TYPE_CATEGORIES) != len(_TABLE):
        raise RuntimeError(f"invalid category table: bad categories {bad} or duplicate types")


_check_table()
