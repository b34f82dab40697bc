"""The generated Avro codecs (:mod:`hub.contract.codegen`) against fastavro, byte for byte and value for value.

For every record schema in the registry, Hypothesis builds data from the schema itself (text with non-ASCII and
long strings, int32 and int64 bounds, nulls and values in unions, empty and large arrays and maps, every enum
symbol, StrEnum members, UUIDs as objects and text, datetimes from year 1 to 9999 in several zones and naive,
dates, missing keys that have defaults, extra keys) and checks that

* the generated writer takes it and writes exactly what ``schemaless_writer`` writes;
* the generated reader reads fastavro's bytes to equal values of the same types and stops at the same place;
* every truncation of those bytes, and random or mutated bytes, are refused by the generated reader unless
  fastavro reads them to the same record;
* :class:`Serde` (which uses the codecs) answers exactly as the pure-fastavro implementation did: the same bytes,
  the same decoded record, the same ``ContractError`` reason and message.

Values off the fast path (``bool`` for an int, a ``str`` subclass that encodes differently, a tuple for an array,
a float for an int, ...) must make the generated writer raise or agree with fastavro. Hypothesis is derandomized
and keeps no database.
"""

from __future__ import annotations

import io
import math
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from enum import Enum, IntEnum, StrEnum
from typing import Any, cast
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hub.contract.codegen import FastPathMiss, Unsupported, reader_for, writer_for
from hub.contract.errors import ContractError
from hub.contract.registry import SchemaRegistry, SchemaVersion
from hub.contract.serde import HEADER_LEN, MAGIC, Serde

SERDE = Serde()
REGISTRY: SchemaRegistry = SERDE.registry
RECORDS = [sv for sv in REGISTRY.all_versions() if sv.schema.get("type") == "record"]
IDS = [f"{sv.type_name}-v{sv.version}" for sv in RECORDS]

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
ZONES = [UTC, timezone(timedelta(hours=14)), timezone(-timedelta(hours=12, minutes=30)), ZoneInfo("Europe/Stockholm")]


def _settings(cases: int) -> settings:
    return settings(max_examples=cases, deadline=None, database=None, derandomize=True,
                    phases=(Phase.explicit, Phase.generate), suppress_health_check=list(HealthCheck))  # fmt: skip


# -- data from a schema -------------------------------------------------------------------------------------

TEXT = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(codec="utf-8"), min_size=30, max_size=90),  # multi-byte, prefixes over one byte
    st.sampled_from(["", "å", "Ä" * 40, "x" * 8191, "ö" * 4096 + "z", "\U0001f600" * 3000]),  # around the tables
)


def ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = [lo, lo + 1, -1, 0, 1, 63, 64, -64, -65, 8191, 8192, -8193, 2**27, 2**41, -(2**41) - 1, hi - 1, hi]
    return st.one_of(st.sampled_from([e for e in edges if lo <= e <= hi]), st.integers(lo, hi),
                     st.integers(-200, 200))  # fmt: skip


def datetimes() -> st.SearchStrategy[Any]:
    aware = st.builds(
        lambda d, tz: d.replace(tzinfo=tz),
        st.datetimes(datetime(1, 1, 2), datetime(9999, 12, 30)),
        st.sampled_from(ZONES),
    )
    edges = st.sampled_from([
        datetime(1970, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(1970, 1, 1, 0, 0, 0, 999, tzinfo=UTC), datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/Stockholm")),  # in the spring gap
    ])  # fmt: skip
    naive = st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1))
    millis = ints(-62135596800000, 253402300799999)  # the datetime range, as fastavro takes ints too
    return st.one_of(aware, edges, naive, millis)


def uuids() -> st.SearchStrategy[Any]:
    return st.one_of(st.uuids(), st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()), TEXT)


def values(schema: Any, named: dict[str, Any], depth: int = 0) -> st.SearchStrategy[Any]:
    """Plain values of ``schema`` that the generated writer takes (the fast path)."""
    if isinstance(schema, str):
        if schema in named:
            return values(named[schema], named, depth)
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": ints(*INT32),
            "long": ints(*INT64),
            "double": st.one_of(st.floats(), st.integers(-(2**70), 2**70)),
            "bytes": st.binary(max_size=300),
            "string": TEXT,
        }[schema]
    if isinstance(schema, list):
        return st.one_of(*(values(b, named, depth + 1) for b in schema))
    logical = schema.get("logicalType")
    if logical == "timestamp-millis":
        return datetimes()
    if logical == "date":
        return st.one_of(st.dates(), ints(-719162, 2932896))
    if logical == "uuid":
        return uuids()
    kind = schema["type"]
    if kind in ("null", "boolean", "int", "long", "double", "bytes", "string"):
        return values(kind, named, depth)
    if kind == "enum":
        symbols = schema["symbols"]
        members = StrEnum("Symbols", [(f"s{i}", s) for i, s in enumerate(symbols)])  # type: ignore[misc]
        return st.one_of(st.sampled_from(symbols), st.sampled_from(list(members)))
    if kind == "array":
        items = values(schema["items"], named, depth + 1)
        return st.one_of(st.lists(items, max_size=4), st.lists(items, min_size=64, max_size=70))
    if kind == "map":
        vals = values(schema["values"], named, depth + 1)
        return st.one_of(
            st.dictionaries(TEXT, vals, max_size=4),
            st.dictionaries(st.text(min_size=3), vals, min_size=64, max_size=66),
        )
    if kind == "record":
        return records(schema, named, depth)
    raise AssertionError(f"no strategy for {schema}")


def records(schema: dict[str, Any], named: dict[str, Any], depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    required = {f["name"]: values(f["type"], named, depth + 1) for f in schema["fields"] if "default" not in f}
    optional = {f["name"]: values(f["type"], named, depth + 1) for f in schema["fields"] if "default" in f}
    extra = st.dictionaries(st.sampled_from(["extra", "x_unknown"]), st.integers(), max_size=1)
    return st.builds(lambda d, e: {**e, **d}, st.fixed_dictionaries(required, optional=optional), extra)


def named_of(sv: SchemaVersion) -> dict[str, Any]:
    return dict(sv.parsed.get("__named_schemas", {}))


# -- comparing ----------------------------------------------------------------------------------------------


_CODECS: dict[tuple[str, int], Any] = {}


def writer(parsed: Any) -> Callable[..., bytes]:
    """``writer_for(parsed)``, compiled once per schema object for the whole module."""
    key = ("w", id(parsed))
    if key not in _CODECS:
        _CODECS[key] = (writer_for(parsed), parsed)
    return _CODECS[key][0]  # type: ignore[no-any-return]


def reader(parsed: Any) -> Callable[[bytes, int], tuple[dict[str, Any], int]]:
    """``reader_for(parsed)``, compiled once per schema object for the whole module."""
    key = ("r", id(parsed))
    if key not in _CODECS:
        _CODECS[key] = (reader_for(parsed), parsed)
    return _CODECS[key][0]  # type: ignore[no-any-return]


def fastavro_bytes(parsed: Any, datum: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, parsed, datum)
    return out.getvalue()


def fastavro_read(parsed: Any, data: bytes, pos: int = 0) -> tuple[Any, int]:
    body = io.BytesIO(data)
    body.seek(pos)
    return schemaless_reader(body, parsed, None), body.tell()


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("err", type(exc).__name__)


def same(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two decoded values differ in value or type ([] when identical; NaNs compare by their bits)."""
    if type(a) is not type(b):
        return [f"{path}: {type(a).__name__} != {type(b).__name__}"]
    if isinstance(a, dict):
        if list(a) != list(b):
            return [f"{path}: keys {list(a)} != {list(b)}"]
        return [p for k in a for p in same(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} != {len(b)} items"]
        return [p for i, (x, y) in enumerate(zip(a, b, strict=True)) for p in same(x, y, f"{path}[{i}]")]
    if isinstance(a, float):
        return [] if struct.pack("<d", a) == struct.pack("<d", b) else [f"{path}: {a!r} != {b!r}"]
    if isinstance(a, datetime) and (a.tzinfo is not b.tzinfo or a != b):
        return [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def check_writer(sv: SchemaVersion, datum: dict[str, Any]) -> bytes:
    """The generated writer takes ``datum`` and writes fastavro's bytes; returns them."""
    want = fastavro_bytes(sv.parsed, datum)
    got = writer(sv.parsed)(datum)
    assert got == want, f"{sv.name}: {got.hex()} != {want.hex()}"
    return want


def check_reader(parsed: Any, body: bytes, fingerprint: bytes = b"\x00" * 8) -> None:
    """fastavro's bytes read to fastavro's record, in a message or alone, and every truncation is refused; bytes
    fastavro refuses (e.g. text that is no UUID in a uuid field) are refused too."""
    read = reader(parsed)
    theirs = outcome(lambda: fastavro_read(parsed, body))
    if theirs[0] == "err":
        with pytest.raises(Exception):  # noqa: B017, PT011 - any exception: the caller asks fastavro
            read(body, 0)
        return
    want, end = theirs[1]
    got, got_end = read(body, 0)
    assert got_end == end == len(body)
    assert same(want, got) == []
    assert same(want, read(MAGIC + fingerprint + body, HEADER_LEN)[0]) == []
    cuts = (
        range(len(body)) if len(body) < 64 else sorted({*range(0, len(body), max(len(body) // 24, 1)), len(body) - 1})
    )
    for cut in cuts:
        with pytest.raises(Exception):  # noqa: B017, PT011
            read(body[:cut], 0)


# -- the pure-fastavro Serde, as it was, for the differential checks ---------------------------------------


def reference_encode(sv: SchemaVersion, datum: Any) -> tuple[str, Any]:
    out = io.BytesIO()
    out.write(MAGIC)
    out.write(sv.fingerprint)
    try:
        schemaless_writer(out, sv.parsed, datum)
    except Exception as exc:
        return ("err", ("invalid_payload", f"cannot encode {sv.name}: {type(exc).__name__}"))
    return ("ok", out.getvalue())


def reference_decode(data: bytes) -> tuple[str, Any]:
    """``Serde.decode_record`` before the generated codecs, with its reasons."""
    if len(data) < len(MAGIC) or data[:2] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            return ("err", "truncated")
        return ("err", "undecodable")
    if len(data) < HEADER_LEN:
        return ("err", "truncated")
    writer = REGISTRY.by_fingerprint(data[2:HEADER_LEN])
    if writer is None:
        return ("err", "unknown_fingerprint")
    reader = REGISTRY.latest(writer.name) or writer
    body = io.BytesIO(data)
    body.seek(HEADER_LEN)
    try:
        if reader.fingerprint == writer.fingerprint:
            record = schemaless_reader(body, writer.parsed, None)
        else:
            record = schemaless_reader(body, writer.parsed, reader.parsed)
    except (EOFError, StopIteration):
        return ("err", "truncated")
    except Exception:
        return ("err", "undecodable")
    if body.tell() > len(data):
        return ("err", "truncated")
    if body.tell() != len(data):
        return ("err", "undecodable")
    return ("ok", (reader.name, record))


def serde_encode(sv: SchemaVersion, datum: Any) -> tuple[str, Any]:
    assert REGISTRY.latest(sv.name) is sv
    try:
        return ("ok", SERDE.encode_datum(sv.name, datum))
    except ContractError as err:
        return ("err", (err.reason, err.message))


def serde_decode(data: bytes) -> tuple[str, Any]:
    try:
        return ("ok", SERDE.decode_record(data))
    except ContractError as err:
        return ("err", err.reason)


def check_decode_same(data: bytes) -> None:
    want, got = reference_decode(data), serde_decode(data)
    assert want[0] == got[0], (want, got)
    if want[0] == "err":
        assert want == got
    else:
        assert want[1][0] == got[1][0]
        assert same(want[1][1], got[1][1]) == []


# -- the tests ----------------------------------------------------------------------------------------------


def test_every_record_schema_is_generated() -> None:
    """The generator covers every record the project has (no schema silently left to fastavro)."""
    assert len(RECORDS) >= 20
    for sv in RECORDS:
        writer_for(sv.parsed)
        reader_for(sv.parsed)
        writer_for(sv.schema)  # plain JSON data works too


@pytest.mark.parametrize("sv", RECORDS, ids=IDS)
def test_writer_and_reader_equal_fastavro(sv: SchemaVersion) -> None:
    named = named_of(sv)

    @_settings(40)
    @given(datum=records(sv.parsed, named))
    def one(datum: dict[str, Any]) -> None:
        body = check_writer(sv, datum)
        check_reader(sv.parsed, body, sv.fingerprint)
        if REGISTRY.latest(sv.name) is sv:
            assert serde_encode(sv, datum) == reference_encode(sv, datum)
            check_decode_same(MAGIC + sv.fingerprint + body)
        else:  # an older version: Serde resolves with fastavro, the generated reader is not used
            check_decode_same(MAGIC + sv.fingerprint + body)

    one()


@pytest.mark.parametrize("sv", RECORDS, ids=IDS)
def test_reader_refuses_or_agrees_on_garbage(sv: SchemaVersion) -> None:
    """Random and mutated bytes: the generated reader raises, or returns exactly fastavro's record and end."""
    read = reader(sv.parsed)
    named = named_of(sv)

    def agree(data: bytes) -> None:
        mine = outcome(lambda: read(data, 0))
        if mine[0] == "ok":
            theirs = fastavro_read(sv.parsed, data)
            assert mine[1][1] == theirs[1]
            assert same(theirs[0], mine[1][0]) == []
        check_decode_same(MAGIC + sv.fingerprint + data)

    @_settings(25)
    @given(datum=records(sv.parsed, named), data=st.data())
    def one(datum: dict[str, Any], data: st.DataObject) -> None:
        body = fastavro_bytes(sv.parsed, datum)
        agree(data.draw(st.binary(max_size=60)))
        at = data.draw(st.integers(0, max(len(body) - 1, 0)))
        byte = data.draw(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x7F, 0x80, 0xFF, 0xC3]))
        agree(body[:at] + bytes([byte]) + body[at + 1 :])  # one byte changed
        agree(body[:at] + bytes([byte]) + body[at:])  # one byte inserted
        agree(body[:at] + body[at + 1 :])  # one byte dropped
        agree(body + bytes([byte]))  # trailing bytes: fastavro's reason (undecodable)

    one()


# -- values off the fast path, hand-picked edge cases -------------------------------------------------------


class Weird(str):
    """A str subclass that encodes, compares and hashes in its own way (fastavro calls its methods)."""

    __slots__ = ()

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"weird"

    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = str.__hash__


class Colour(Enum):
    red = "red"


class Small(IntEnum):
    one = 1


SYNTHETIC = {
    "type": "record",
    "name": "Synthetic",
    "namespace": "test.codegen",
    "fields": [
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "d", "type": "double"},
        {"name": "y", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": [f"s{i}" for i in range(70)]}},
        {"name": "a", "type": {"type": "array", "items": ["null", "long"]}},
        {"name": "m", "type": {"type": "map", "values": {"type": "int", "logicalType": "date"}}},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "u", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "nb", "type": ["boolean", "null"], "default": True},
        {"name": "ni", "type": ["null", "int"], "default": None},
        {"name": "nd", "type": ["null", "double"], "default": None},
        {"name": "ny", "type": ["string", "null"], "default": "ab"},
        {"name": "nby", "type": ["null", "bytes"], "default": None},
        {"name": "ne", "type": ["null", "E"], "default": None},
        {"name": "nt", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None},
        {"name": "nda", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None},
        {"name": "nu", "type": ["null", {"type": "string", "logicalType": "uuid"}], "default": None},
        {"name": "na", "type": ["null", {"type": "array", "items": "string"}], "default": None},
        {"name": "nm", "type": ["null", {"type": "map", "values": "string"}], "default": None},
        {
            "name": "nr",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Inner",
                    "fields": [
                        {"name": "x", "type": "int"},
                        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
                        {"name": "day", "type": ["null", {"type": "int", "logicalType": "date"}], "default": None},
                        {"name": "tag", "type": "string", "default": "t"},
                    ],
                },
            ],
            "default": None,
        },
        {"name": "only", "type": ["string"]},
        {"name": "again", "type": ["null", "Inner"], "default": None},
    ],
}
SYN: dict[str, Any] = cast(dict[str, Any], parse_schema(SYNTHETIC))
BASE: dict[str, Any] = {
    "b": True, "i": 1, "l": -5, "d": 1.5, "y": b"\x00\xff", "s": "sträng", "e": "s69", "a": [None, 2**40],
    "m": {"k": date(2020, 2, 29)}, "t": datetime(2026, 8, 14, 12, 5, 0, 123456, tzinfo=UTC),
    "u": UUID(int=7), "nr": {"x": 3, "when": 0}, "only": "o",
}  # fmt: skip


def synthetic_values() -> st.SearchStrategy[dict[str, Any]]:
    return records(SYN, dict(SYN["__named_schemas"]))


def test_synthetic_schema_covers_every_supported_shape() -> None:
    write, read = writer_for(SYN), reader_for(SYN)
    body = fastavro_bytes(SYN, BASE)
    assert write(BASE) == body
    assert write(BASE, b"head") == b"head" + body
    want, end = fastavro_read(SYN, body)
    got, got_end = read(body, 0)
    assert (got_end, same(want, got)) == (end, [])


@_settings(150)
@given(datum=synthetic_values())
def test_synthetic_schema_equals_fastavro(datum: dict[str, Any]) -> None:
    body = fastavro_bytes(SYN, datum)
    assert writer(SYN)(datum) == body
    check_reader(SYN, body)


OFF_PATH: list[tuple[str, Any]] = [
    ("b", 1), ("b", None), ("b", "x"), ("i", True), ("i", 1.0), ("i", 2**31), ("i", -(2**31) - 1), ("i", Small.one),
    ("i", "1"), ("l", 2**63), ("l", 5.7), ("l", None), ("d", True), ("d", "NaN"), ("d", 2**1100), ("d", None),
    ("y", bytearray(b"ab")), ("y", "ab"), ("s", b"ab"), ("s", Weird("abc")), ("s", 5), ("s", "\ud800"),
    ("e", "nope"), ("e", Weird("s1")), ("e", Colour.red), ("e", 3), ("a", ("x",)), ("a", [True]), ("a", None),
    ("m", OrderedDict(k=1)), ("m", {1: 1}), ("m", {"k": datetime(2020, 1, 1)}), ("t", "2026-01-01"),
    ("t", datetime(2026, 1, 1).date()), ("t", True), ("t", 2**63), ("u", b"x"), ("u", 5), ("nb", 0), ("ni", True),
    ("ni", 2**40), ("ni", date(2020, 1, 1)), ("nd", True), ("ny", b"x"), ("nby", bytearray()), ("ne", "nope"),
    ("nt", "x"),
    ("nda", datetime(2020, 1, 1, tzinfo=UTC)), ("nda", "2020-01-01"), ("nda", 2**40), ("nu", UUID(int=1)),
    ("na", ["a", 1]), ("na", ("a",)), ("nm", {"a": None}), ("nr", {"x": 1}), ("nr", {"when": 1}),
    ("nr", {"x": 2**40, "when": 1}), ("nr", {"x": True, "when": 1}), ("nr", OrderedDict(x=1, when=1)),
    ("nr", ("test.codegen.Inner", {"x": 1, "when": 1})), ("nr", {"x": 1, "when": 1, "day": True}), ("only", None),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), OFF_PATH, ids=[f"{f}={v!r}"[:40] for f, v in OFF_PATH])
def test_off_path_values_raise_or_agree(field: str, value: Any) -> None:
    """A value off the fast path: the generated writer raises (fastavro decides) or writes fastavro's bytes."""
    datum = {**BASE, field: value}
    mine = outcome(lambda: writer(SYN)(datum))
    if mine[0] == "ok":
        assert mine[1] == fastavro_bytes(SYN, datum)


def test_missing_keys_raise_or_agree() -> None:
    write = writer_for(SYN)
    for key in [*BASE, "nb", "ny"]:
        datum = {k: v for k, v in BASE.items() if k != key}
        mine = outcome(lambda d=datum: write(d))  # type: ignore[misc]
        if mine[0] == "ok":
            assert mine[1] == fastavro_bytes(SYN, datum), key
    assert write({**BASE, "nb": None, "ny": None}) == fastavro_bytes(SYN, {**BASE, "nb": None, "ny": None})
    assert write({**BASE, "extra": object()}) == fastavro_bytes(SYN, BASE)  # extra keys are ignored, as fastavro


def test_not_a_mapping_raises() -> None:
    datum: Any
    for datum in (None, [], "x", OrderedDict(BASE)):
        with pytest.raises(FastPathMiss):
            writer(SYN)(datum)


@contextmanager
def local_zone(name: str) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.mark.parametrize("zone", ["UTC", "Europe/Stockholm", "America/St_Johns"])
def test_naive_datetimes_follow_fastavro_in_the_local_zone(zone: str) -> None:
    """fastavro reads a naive datetime as local time (mktime): so does the generated writer, DST edges included."""
    write = writer_for(SYN)
    stamps = [
        datetime(2026, 3, 29, 2, 30),  # in the spring gap
        datetime(2026, 10, 25, 2, 30, 0, 999),  # in the autumn overlap
        datetime(1969, 12, 31, 23, 59, 59),  # mktime's -1
        datetime(1950, 6, 1, 12, 0, 0, 500),
        datetime(2100, 1, 1),
        datetime(1970, 1, 1, 0, 0, 0, 1999),
    ]
    with local_zone(zone):
        for stamp in stamps:
            datum = {**BASE, "t": stamp}
            assert write(datum) == fastavro_bytes(SYN, datum), stamp


LONG = {"type": "record", "name": "L", "fields": [{"name": "a", "type": "long"}]}
OPT = {"type": "record", "name": "O", "fields": [{"name": "a", "type": ["null", "long"]}]}
TEXT_ONLY = {"type": "record", "name": "T", "fields": [{"name": "a", "type": "string"}]}
FLAGS = {"type": "record", "name": "R", "fields": [
    {"name": "f", "type": "boolean"},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}},
    {"name": "n", "type": ["null", "string"]},
    {"name": "l", "type": {"type": "array", "items": "int"}}]}  # fmt: skip


@pytest.mark.parametrize(
    ("schema", "body"),
    [
        (OPT, b"\x80\x00"),  # non-canonical varint for union index 0: fastavro reads null
        (LONG, b"\xff" * 10 + b"\x01"),  # a varint of 11 bytes: fastavro's C reader drops the high bits
        (LONG, b"\xfe" * 9 + b"\x03"),  # a varint beyond 64 bits
        (FLAGS, b"\x02\x00\x00\x00"),  # boolean byte 2: true for fastavro
        (FLAGS, b"\x01\x01\x00\x00"),  # enum index -1: fastavro takes the last symbol
        (FLAGS, b"\x01\x00\x01\x02a\x00"),  # union index -1: fastavro reads the last branch
        (FLAGS, b"\x01\x00\x00\x01\x02\x02\x00"),  # a negative block count (with its byte size)
        (TEXT_ONLY, b"\x03abc"),  # a negative length (fastavro: EOFError)
        (TEXT_ONLY, b"\x0aab"),  # a length past the end (fastavro: EOFError)
    ],
)
def test_reader_leaves_fastavros_own_readings_to_it(schema: dict[str, Any], body: bytes) -> None:
    parsed = parse_schema(schema)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any exception: the caller asks fastavro
        reader_for(parsed)(body, 0)
    outcome(lambda: fastavro_read(parsed, body))  # whatever fastavro answers, it is its answer


def test_reader_takes_the_longest_varint_fastavro_reads_the_same() -> None:
    parsed = parse_schema(LONG)
    for value in (2**63 - 1, -(2**63), 2**62, -1, 0):
        body = fastavro_bytes(parsed, {"a": value})
        assert reader_for(parsed)(body, 0) == fastavro_read(parsed, body) == ({"a": value}, len(body))


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "record", "name": "F", "fields": [{"name": "f", "type": "float"}]},
        {"type": "record", "name": "X", "fields": [{"name": "f", "type": {"type": "fixed", "name": "X4", "size": 4}}]},
        {
            "type": "record",
            "name": "D",
            "fields": [{"name": "f", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 2}}],
        },
        {
            "type": "record",
            "name": "M",
            "fields": [{"name": "f", "type": {"type": "long", "logicalType": "timestamp-micros"}}],
        },
        {"type": "record", "name": "U", "fields": [{"name": "f", "type": ["null", "string", "int"]}]},
        {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"]}]},
        {"type": "enum", "name": "Alone", "symbols": ["a"]},
    ],
    ids=["float", "fixed", "decimal", "timestamp-micros", "wide-union", "recursive", "not-a-record"],
)
def test_unsupported_schemas_are_refused_at_generation(schema: dict[str, Any]) -> None:
    with pytest.raises(Unsupported):
        writer_for(schema)
    with pytest.raises(Unsupported):
        reader_for(schema)


def test_serde_falls_back_to_fastavro_for_an_unsupported_schema() -> None:
    serde = Serde(SchemaRegistry(REGISTRY.schemas_dir))
    sv = serde.registry.register(
        '{"type": "record", "name": "test.codegen.Floaty", "fields": [{"name": "f", "type": "float"}]}'
    )
    data = MAGIC + sv.fingerprint + fastavro_bytes(sv.parsed, {"f": 0.5})
    assert serde.decode_record(data) == ("test.codegen.Floaty", {"f": 0.5})
    with pytest.raises(ContractError) as err:
        serde.decode_record(data[:-1])
    assert err.value.reason == "truncated"


def test_serde_encodes_off_path_values_as_fastavro_did() -> None:
    """Through Serde.encode_datum: the same bytes, or the same ContractError, as the pure-fastavro Serde."""
    sv = REGISTRY.latest("se.samverkan.hub.AuditRecord")
    assert sv is not None
    good = {"seq": 1, "event_id": "e", "receiver": "r", "legal_basis": "b", "decision": "delivered", "reason": None,
            "fields_disclosed": ["a"], "at": datetime(2026, 1, 1, tzinfo=UTC), "prev_hash": "p", "hash": "h",
            "partition": 0, "source_unit": None, "credential": None}  # fmt: skip
    variants: list[dict[str, Any]] = [good, {**good, "seq": True}, {**good, "seq": 2**64}, {**good, "decision": "x"},
                                      {**good, "fields_disclosed": ("a",)}, {**good, "at": "now"},
                                      {**good, "reason": 5}, {**good, "partition": 2**40}, {**good, "hash": None},
                                      {k: v for k, v in good.items() if k != "hash"}, {**good, "receiver": Weird("r")},
                                      {**good, "at": datetime(2026, 1, 1)}]  # fmt: skip
    for datum in variants:
        assert serde_encode(sv, datum) == reference_encode(sv, datum), datum


def test_deep_types_of_decoded_values() -> None:
    """fastavro's value types: aware UTC datetimes, dates, UUIDs, str for enums, dict for maps."""
    datum = {**BASE, "nda": date(1, 1, 1), "nu": "00000000-0000-0000-0000-00000000000a"}
    got, _ = reader_for(SYN)(fastavro_bytes(SYN, datum), 0)
    assert got["t"] == datetime(2026, 8, 14, 12, 5, 0, 123000, tzinfo=UTC)
    assert got["t"].tzinfo is UTC
    assert type(got["u"]) is UUID
    assert (got["u"], got["nu"]) == (UUID(int=7), UUID(int=10))
    assert type(got["e"]) is str
    assert got["e"] == "s69"
    assert got["m"] == {"k": date(2020, 2, 29)}
    assert got["nda"] == date(1, 1, 1)
    assert math.isclose(got["d"], 1.5)
    assert got["a"] == [None, 2**40]
    assert got["nr"] == {"x": 3, "when": datetime(1970, 1, 1, tzinfo=UTC), "day": None, "tag": "t"}
