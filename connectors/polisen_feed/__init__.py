"""Connector for the police's open events feed (https://polisen.se/api/events), Halland.

Pure parsing/mapping lives in :mod:`.mapping` and :mod:`.categories`; HTTP in :mod:`.client`.
See ``docs/polisen-feed.md``.
"""

from connectors.polisen_feed.categories import (
    CATEGORIES,
    TYPE_CATEGORIES,
    Classification,
    category_table_markdown,
    classify,
    replace_table_block,
)
from connectors.polisen_feed.client import FeedFetchError, PolisenClient, RateLimiter
from connectors.polisen_feed.mapping import (
    FeedParseError,
    OutsideRegionError,
    PoliceNotice,
    load_municipalities,
    parse_event,
)

__all__ = [
    "CATEGORIES",
    "TYPE_CATEGORIES",
    "Classification",
    "FeedFetchError",
    "FeedParseError",
    "OutsideRegionError",
    "PoliceNotice",
    "PolisenClient",
    "RateLimiter",
    "category_table_markdown",
    "classify",
    "load_municipalities",
    "parse_event",
    "replace_table_block",
]
