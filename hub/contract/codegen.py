"""Avro encoders and decoders generated from a record schema: fastavro's bytes and values, several times faster.

:func:`writer_for` and :func:`reader_for` turn a record schema into Python source specialised to it (every
field's encoding inline, no dispatch on the schema at run time), compile it once and return the function::

    write = writer_for(sv.parsed)           # (datum, head=b"") -> head + Avro body
    read = reader_for(sv.parsed)            # (buf, pos) -> (record, end position)

Both are *fast paths* with fastavro as the authority (``schemaless_writer`` / ``schemaless_reader`` without
schema resolution):

* whatever a generated writer returns is byte for byte what ``schemaless_writer`` writes for that datum; a
  generated reader's ``(record, end)`` is what ``schemaless_reader`` returns and where it stops (equal values
  of the same types: ``str``, ``int``, ``float``, ``bool``, ``bytes``, ``list``, ``dict``, ``None``, aware UTC
  ``datetime`` for timestamp-millis, ``date`` for date, ``uuid.UUID`` for uuid);
* for anything else they *raise* (:class:`FastPathMiss`, or whatever the input provokes: ``KeyError``,
  ``IndexError``, ``UnicodeDecodeError``, ...) and the caller asks fastavro, which then gives its own answer:
  the bytes, the value or its exception. So the writer only takes the plain values it can prove fastavro
  writes identically (exact types: ``str`` and well-behaved ``str`` subclasses such as StrEnum members,
  ``int`` in range and not ``bool``, ``float`` or ``int`` for doubles, ``bool``, ``bytes``, ``list``,
  ``dict``, ``datetime``, ``date``, ``UUID``); the reader refuses what fastavro reads in its own way (a
  negative length, block count, enum or union index; an enum or union index not in one canonical byte; a
  boolean byte other than 0/1; a varint longer than fastavro's 64 bits; bytes past the end).

Timestamps follow fastavro exactly: an aware ``datetime`` is the floor of ``(v - epoch) / 1 ms`` (so
microseconds are truncated towards the past, also before 1970), a naive one is local time through
``time.mktime`` plus ``int(microsecond / 1000)``, an ``int`` is written as is; reading gives
``epoch + timedelta(milliseconds=n)`` in UTC.

Covered: records (nested, inline), ``null``, ``boolean``, ``int``, ``long``, ``double``, ``bytes``, ``string``,
enums, arrays, maps, unions of ``null`` and one other type (either order) or of one type, and the logical
types timestamp-millis (long), date (int) and uuid (string). Anything else (``float``, ``fixed``, other
logical types, unions of several non-null types, recursive records, ...) raises :class:`Unsupported` at
generation time: the caller keeps fastavro for that schema.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, cast
from uuid import UUID

from fastavro.schema import parse_schema

__all__ = [
    "FastPathMiss",
    "Reader",
    "Unsupported",
    "Writer",
    "reader_for",
    "reader_source",
    "writer_for",
    "writer_source",
]

Writer = Callable[..., bytes]
"""``writer(datum, head=b"") -> bytes``: ``head`` followed by the Avro body of ``datum``."""
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]
"""``reader(buf, pos) -> (record, end)``: the record whose body starts at ``buf[pos]`` and where it ends."""


class Unsupported(Exception):
    """The schema uses a type or shape the generator does not cover (use fastavro for it)."""


class FastPathMiss(Exception):
    """The datum or bytes are not on the fast path: ask fastavro."""


PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
LOGICAL: Final = frozenset({("long", "timestamp-millis"), ("int", "date"), ("string", "uuid")})
INT_MIN: Final = -(1 << 31)
INT_MAX: Final = (1 << 31) - 1
LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1
DAYS_SHIFT: Final = date(1970, 1, 1).toordinal()
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# -- run-time helpers the generated code calls -------------------------------------------------------------


def _uvarint(z: int) -> bytes:
    """An unsigned varint (``z`` already zig-zagged, non-negative)."""
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


_FIN: Final[list[bytes]] = [bytes((i,)) for i in range(0x80)] + [
    bytes(((i & 0x7F) | 0x80, i >> 7)) for i in range(0x80, 0x4000)
]
"""The varint of every ``z < 2**14``."""
_CON: Final[list[bytes]] = [bytes(((i & 0x7F) | 0x80, (i >> 7) | 0x80)) for i in range(0x4000)]
"""14 bits of a longer varint: two bytes, both with the continuation bit."""


class _Prefixes(dict[int, bytes]):
    """Length prefixes by length (zig-zag varint of ``n``), computed past the table."""

    def __missing__(self, n: int) -> bytes:
        return _uvarint(n << 1)


_LP: Final = _Prefixes({n: _FIN[n << 1] for n in range(0x2000)})
_ZD: Final[tuple[int, ...]] = tuple((z >> 1) ^ -(z & 1) for z in range(0x80))
"""The long of every one-byte varint."""


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    """The unsigned varint starting at ``buf[pos]`` and the position after it. At most 10 bytes and 64 bits, as
    fastavro's C reader keeps (it drops higher bits silently; such input is left to fastavro)."""
    b = buf[pos]
    z = b & 0x7F
    shift = 7
    while b > 0x7F:
        pos += 1
        b = buf[pos]
        z |= (b & 0x7F) << shift
        shift += 7
        if shift > 70:
            raise FastPathMiss("varint longer than 10 bytes")
    if z >> 64:
        raise FastPathMiss("varint beyond 64 bits")
    return z, pos + 1


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """The zig-zag long at ``buf[pos]`` and the position after it (unrolled to 6 bytes: timestamps)."""
    b = buf[pos]
    z = b & 0x7F
    if b < 0x80:
        return (z >> 1) ^ -(z & 1), pos + 1
    b = buf[pos + 1]
    z |= (b & 0x7F) << 7
    if b < 0x80:
        return (z >> 1) ^ -(z & 1), pos + 2
    b = buf[pos + 2]
    z |= (b & 0x7F) << 14
    if b < 0x80:
        return (z >> 1) ^ -(z & 1), pos + 3
    b = buf[pos + 3]
    z |= (b & 0x7F) << 21
    if b < 0x80:
        return (z >> 1) ^ -(z & 1), pos + 4
    b = buf[pos + 4]
    z |= (b & 0x7F) << 28
    if b < 0x80:
        return (z >> 1) ^ -(z & 1), pos + 5
    b = buf[pos + 5]
    z |= (b & 0x7F) << 35
    if b < 0x80:
        return (z >> 1) ^ -(z & 1), pos + 6
    z, pos = _read_uvarint(buf, pos)
    return (z >> 1) ^ -(z & 1), pos


def _read_blob(buf: bytes, pos: int) -> tuple[bytes, int]:
    """Length-prefixed bytes at ``buf[pos]`` (any prefix; the generated code inlines one-byte ones)."""
    z, pos = _read_uvarint(buf, pos)
    if z & 1:
        raise FastPathMiss("negative length")
    end = pos + (z >> 1)
    if end > len(buf):
        raise FastPathMiss("length past the end")
    return buf[pos:end], end


def _read_text(buf: bytes, pos: int) -> tuple[str, int]:
    b, pos = _read_blob(buf, pos)
    return b.decode(), pos


_SAFE_STR_TYPES: Final[set[type]] = {str}


def _safe_str(v: object) -> bool:
    """Whether ``v`` is a ``str`` whose class compares, hashes and encodes as its text (StrEnum members do), so
    that fastavro's ``v.encode()`` / ``symbols.index(v)`` and a dict look-up agree. Caches the class."""
    t = type(v)
    if not issubclass(t, str):
        return False
    if all(getattr(t, m) is getattr(str, m) for m in ("__eq__", "__ne__", "__hash__", "encode")):
        _SAFE_STR_TYPES.add(t)
        return True
    return False


_NAMESPACE: Final[dict[str, Any]] = {
    "_M": FastPathMiss,
    "_uv": _uvarint,
    "_FIN": _FIN,
    "_CON": _CON,
    "_LP": _LP,
    "_ZD": _ZD,
    "_ruv": _read_uvarint,
    "_rlong": _read_long,
    "_rblob": _read_blob,
    "_rtext": _read_text,
    "_SAFE": _SAFE_STR_TYPES,
    "_safe": _safe_str,
    "_pack_d": struct.Struct("<d").pack,
    "_unpack_d": struct.Struct("<d").unpack_from,
    "_BOOL": (False, True),
    "_str": str,
    "_int": int,
    "_float": float,
    "_bytes": bytes,
    "_list": list,
    "_dict": dict,
    "_DT": datetime,
    "_DATE": date,
    "_UUID": UUID,
    "_TD": timedelta,
    "_MS": timedelta(milliseconds=1),
    "_EPOCH": EPOCH,
    "_mktime": time.mktime,
    "_fromord": date.fromordinal,
    "_bytearray": bytearray,
    "_type": type,
    "_len": len,
    "_range": range,
}


# -- schema walking -----------------------------------------------------------------------------------------


def _parsed(schema: Any) -> Any:
    if isinstance(schema, dict) and "__fastavro_parsed" in schema:
        return schema
    try:
        return parse_schema(schema)
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise Unsupported(f"fastavro cannot parse the schema: {exc}") from exc


class _Schema:
    """Resolves named references of one parsed schema and classifies each type."""

    def __init__(self, parsed: Any) -> None:
        self.named: dict[str, Any] = dict(parsed.get("__named_schemas", {})) if isinstance(parsed, dict) else {}

    def kind(self, schema: Any) -> tuple[str, Any]:
        """``(kind, schema)`` with references resolved: kind is a primitive name, ``record``, ``enum``,
        ``array``, ``map``, ``union``, ``timestamp-millis``, ``date`` or ``uuid``."""
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema, schema
            if schema in self.named:
                return self.kind(self.named[schema])
            raise Unsupported(f"unknown type {schema!r}")
        if isinstance(schema, list):
            return "union", schema
        if not isinstance(schema, dict):
            raise Unsupported(f"not a schema: {schema!r}")
        t = schema.get("type")
        if not isinstance(t, str):
            raise Unsupported("nested type definition")
        logical = schema.get("logicalType")
        if logical is not None:
            if (t, logical) not in LOGICAL:
                raise Unsupported(f"logical type {t}/{logical}")
            return cast(str, logical), schema
        if t in PRIMITIVES:
            return t, t
        if t in ("record", "enum", "array", "map"):
            return t, schema
        raise Unsupported(f"type {t}")

    def union_shape(self, branches: list[Any]) -> tuple[int | None, int, Any]:
        """``(index of null or None, index of the other branch, its schema)`` for ``[null, X]``, ``[X, null]``
        and ``[X]``."""
        nulls = [i for i, b in enumerate(branches) if self.kind(b)[0] == "null"]
        others = [i for i, b in enumerate(branches) if self.kind(b)[0] != "null"]
        if len(others) != 1 or len(nulls) > 1:
            raise Unsupported(f"union of {len(others)} non-null types")
        for i in others:
            if self.kind(branches[i])[0] == "union":
                raise Unsupported("union inside a union")
        return (nulls[0] if nulls else None), others[0], branches[others[0]]


class _Source:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.counter = 0

    def var(self, prefix: str = "v") -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any, prefix: str = "_C") -> str:
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _zz(n: int) -> int:
    return (n << 1) ^ (n >> 63)


# -- writer -------------------------------------------------------------------------------------------------


class _WriterGen:
    def __init__(self, schema: _Schema) -> None:
        self.s = schema
        self.src = _Source()
        self.stack: list[str] = []

    def long(self, ind: int, v: str, lo: int, hi: int) -> None:
        """Check the int in local ``v`` and append its zig-zag varint."""
        e = self.src.emit
        e(ind, f"if _type({v}) is not _int or not {lo} <= {v} <= {hi}:")
        e(ind + 1, "raise _M")
        z = self.src.var("z")
        e(ind, f"{z} = ({v} << 1) ^ ({v} >> 63)")
        e(ind, f"if {z} < 0x4000:")
        e(ind + 1, f"out += _FIN[{z}]")
        e(ind, f"elif {z} < 0x10000000:")
        e(ind + 1, f"out += _CON[{z} & 0x3FFF]")
        e(ind + 1, f"out += _FIN[{z} >> 14]")
        e(ind, f"elif {z} < 0x40000000000:")
        e(ind + 1, f"out += _CON[{z} & 0x3FFF]")
        e(ind + 1, f"out += _CON[{z} >> 14 & 0x3FFF]")
        e(ind + 1, f"out += _FIN[{z} >> 28]")
        e(ind, "else:")
        e(ind + 1, f"out += _uv({z})")

    def check_str(self, ind: int, v: str) -> None:
        self.src.emit(ind, f"if _type({v}) not in _SAFE and not _safe({v}):")
        self.src.emit(ind + 1, "raise _M")

    def text(self, ind: int, v: str) -> None:
        """A str (or well-behaved str subclass) as length + UTF-8, encoded as fastavro does (``v.encode()``)."""
        self.check_str(ind, v)
        b = self.src.var("b")
        self.src.emit(ind, f"{b} = {v}.encode()")
        self.blob(ind, b)

    def blob(self, ind: int, b: str) -> None:
        self.src.emit(ind, f"out += _LP[_len({b})]")
        self.src.emit(ind, f"out += {b}")

    def write(self, schema: Any, v: str, ind: int) -> None:
        """Emit code writing the value in local ``v`` per ``schema`` (raising _M off the fast path)."""
        kind, sch = self.s.kind(schema)
        e = self.src.emit
        if kind == "null":
            e(ind, f"if {v} is not None:")
            e(ind + 1, "raise _M")
        elif kind == "boolean":
            e(ind, f"if {v} is True:")
            e(ind + 1, "ap(1)")
            e(ind, f"elif {v} is False:")
            e(ind + 1, "ap(0)")
            e(ind, "else:")
            e(ind + 1, "raise _M")
        elif kind == "int":
            self.long(ind, v, INT_MIN, INT_MAX)
        elif kind == "long":
            self.long(ind, v, LONG_MIN, LONG_MAX)
        elif kind == "double":
            e(ind, f"if _type({v}) is _float:")
            e(ind + 1, f"out += _pack_d({v})")
            e(ind, f"elif _type({v}) is _int:")  # fastavro converts as float() does (OverflowError: to fastavro)
            e(ind + 1, f"out += _pack_d(_float({v}))")
            e(ind, "else:")
            e(ind + 1, "raise _M")
        elif kind == "bytes":
            e(ind, f"if _type({v}) is not _bytes:")
            e(ind + 1, "raise _M")
            self.blob(ind, v)
        elif kind == "string":
            self.text(ind, v)
        elif kind == "uuid":
            e(ind, f"if _type({v}) is _UUID:")
            e(ind + 1, f"{v} = _str({v})")
            self.text(ind, v)
        elif kind == "timestamp-millis":
            # fastavro: aware -> (days * 86400 + seconds) * 1000 + microseconds // 1000 of v - epoch, which is the
            # floor of (v - epoch) / 1 ms; naive -> local time by mktime, plus the milliseconds; an int as is.
            e(ind, f"if _type({v}) is _DT:")
            e(ind + 1, f"if {v}.tzinfo is not None:")
            e(ind + 2, f"{v} = ({v} - _EPOCH) // _MS")
            e(ind + 1, "else:")
            e(ind + 2, f"{v} = _int(_mktime({v}.timetuple())) * 1000 + _int({v}.microsecond / 1000)")
            self.long(ind, v, LONG_MIN, LONG_MAX)
        elif kind == "date":
            e(ind, f"if _type({v}) is _DATE:")
            e(ind + 1, f"{v} = {v}.toordinal() - {DAYS_SHIFT}")
            self.long(ind, v, INT_MIN, INT_MAX)
        elif kind == "enum":
            table = self.src.const({sym: _uvarint(_zz(i)) for i, sym in enumerate(_symbols(sch))}, "_E")
            self.check_str(ind, v)
            e(ind, f"out += {table}[{v}]")
        elif kind == "array":
            e(ind, f"if _type({v}) is not _list:")
            e(ind + 1, "raise _M")
            e(ind, f"if {v}:")
            e(ind + 1, f"out += _LP[_len({v})]")
            item = self.src.var("i")
            e(ind + 1, f"for {item} in {v}:")
            self.write(sch["items"], item, ind + 2)
            e(ind, "ap(0)")
        elif kind == "map":
            e(ind, f"if _type({v}) is not _dict:")
            e(ind + 1, "raise _M")
            e(ind, f"if {v}:")
            e(ind + 1, f"out += _LP[_len({v})]")
            key, val = self.src.var("k"), self.src.var("x")
            e(ind + 1, f"for {key}, {val} in {v}.items():")
            self.text(ind + 2, key)
            self.write(sch["values"], val, ind + 2)
            e(ind, "ap(0)")
        elif kind == "union":
            null_at, other_at, other = self.s.union_shape(sch)
            if null_at is not None:
                e(ind, f"if {v} is None:")
                e(ind + 1, f"ap({_zz(null_at)})")
                e(ind, "else:")
                ind += 1
            e(ind, f"ap({_zz(other_at)})")
            self.write(other, v, ind)
        elif kind == "record":
            self.record(sch, v, ind)
        else:
            raise Unsupported(f"type {kind}")

    def record(self, sch: dict[str, Any], v: str, ind: int) -> None:
        name = sch.get("name", "")
        if name in self.stack:
            raise Unsupported(f"recursive record {name}")
        self.stack.append(name)
        e = self.src.emit
        e(ind, f"if _type({v}) is not _dict:")
        e(ind + 1, "raise _M")
        for field in sch["fields"]:
            fname = _field_name(field)
            f = self.src.var("f")
            if "default" in field:  # fastavro writes the default for a missing key (validating it in a union)
                e(ind, f"{f} = {v}.get({fname!r}, {self.src.const(field['default'], '_D')})")
            else:  # a missing key without a default: fastavro's own answer (an error, or null for some unions)
                e(ind, f"{f} = {v}[{fname!r}]")
            self.write(field["type"], f, ind)
        self.stack.pop()


def _symbols(sch: dict[str, Any]) -> list[str]:
    symbols = sch.get("symbols")
    if not (isinstance(symbols, list) and all(isinstance(x, str) for x in symbols)) or len(set(symbols)) != len(
        symbols
    ):
        raise Unsupported("enum symbols")
    return symbols


def _field_name(field: Any) -> str:
    name = field.get("name") if isinstance(field, dict) else None
    if not isinstance(name, str) or "type" not in field:
        raise Unsupported("field")
    return name


def writer_source(schema: Any) -> tuple[str, dict[str, Any]]:
    """The generated writer's source and its constants (raises :class:`Unsupported`)."""
    parsed = _parsed(schema)
    s = _Schema(parsed)
    if s.kind(parsed)[0] != "record":
        raise Unsupported("not a record schema")
    gen = _WriterGen(s)
    gen.src.emit(0, "def write(d, head=b''):")
    gen.src.emit(1, "out = _bytearray(head)")
    gen.src.emit(1, "ap = out.append")
    gen.record(s.kind(parsed)[1], "d", 1)
    gen.src.emit(1, "return _bytes(out)")
    return "\n".join(gen.src.lines) + "\n", gen.src.consts


def writer_for(schema: Any) -> Writer:
    """A generated writer for a record schema (parsed by fastavro or plain JSON data): ``write(datum, head=b"")``
    returns ``head`` + the Avro body of ``datum``, byte for byte fastavro's, or raises when ``datum`` is not on
    its fast path (then use fastavro). Raises :class:`Unsupported` for a schema it does not cover."""
    source, consts = writer_source(schema)
    return cast(Writer, _compile(source, consts, "write", schema))


# -- reader -------------------------------------------------------------------------------------------------


class _ReaderGen:
    def __init__(self, schema: _Schema) -> None:
        self.s = schema
        self.src = _Source()
        self.stack: list[str] = []

    # Bounds: a one-byte read past the end raises IndexError, a double past the end struct.error; a slice past the
    # end is short and leaves ``pos`` beyond ``L``, which the next read or the final check refuses.

    def long(self, ind: int, v: str) -> None:
        e = self.src.emit
        z = self.src.var("z")
        e(ind, f"{z} = buf[pos]")
        e(ind, f"if {z} < 0x80:")
        e(ind + 1, f"{v} = _ZD[{z}]")
        e(ind + 1, "pos += 1")
        e(ind, "else:")
        e(ind + 1, f"{v}, pos = _rlong(buf, pos)")

    def blob(self, ind: int, v: str, helper: str, decode: str) -> None:
        e = self.src.emit
        n = self.src.var("n")
        e(ind, f"{n} = buf[pos]")
        e(ind, f"if {n} & 0x81:")  # several bytes, or negative: the general helper (negative -> _M)
        e(ind + 1, f"{v}, pos = {helper}(buf, pos)")
        e(ind, "else:")
        end = self.src.var("e")
        e(ind + 1, f"{end} = pos + 1 + ({n} >> 1)")
        e(ind + 1, f"{v} = buf[pos + 1:{end}]{decode}")
        e(ind + 1, f"pos = {end}")

    def text(self, ind: int, v: str) -> None:
        self.blob(ind, v, "_rtext", ".decode()")

    def min_size(self, schema: Any, depth: int = 0) -> int:
        """The fewest bytes a value of ``schema`` takes (0 if it can be empty)."""
        if depth > 50:
            return 0
        kind, sch = self.s.kind(schema)
        if kind == "null":
            return 0
        if kind == "double":
            return 8
        if kind == "record":
            return sum(self.min_size(f["type"], depth + 1) for f in sch["fields"])
        return 1

    def read(self, schema: Any, v: str, ind: int) -> None:
        """Emit code reading a value of ``schema`` into local ``v``."""
        kind, sch = self.s.kind(schema)
        e = self.src.emit
        if kind == "null":
            e(ind, f"{v} = None")
        elif kind == "boolean":
            e(ind, f"{v} = _BOOL[buf[pos]]")  # fastavro takes any non-zero byte as true: left to it
            e(ind, "pos += 1")
        elif kind in ("int", "long", "date"):
            self.long(ind, v)
            if kind == "date":
                e(ind, f"{v} = _fromord({v} + {DAYS_SHIFT})")
        elif kind == "timestamp-millis":
            e(ind, f"{v}, pos = _rlong(buf, pos)")
            e(ind, f"{v} = _EPOCH + _TD(0, 0, 0, {v})")
        elif kind == "double":
            e(ind, f"{v} = _unpack_d(buf, pos)[0]")
            e(ind, "pos += 8")
        elif kind == "bytes":
            self.blob(ind, v, "_rblob", "")
        elif kind == "string":
            self.text(ind, v)
        elif kind == "uuid":
            self.text(ind, v)
            e(ind, f"{v} = _UUID({v})")
        elif kind == "enum":
            symbols = _symbols(sch)
            table = self.src.const({_zz(i): sym for i, sym in enumerate(symbols)}, "_E")
            if len(symbols) <= 64:  # one byte; a longer (non-canonical) varint misses the table: fastavro's
                e(ind, f"{v} = {table}[buf[pos]]")
                e(ind, "pos += 1")
            else:
                z = self.src.var("z")
                e(ind, f"{z}, pos = _ruv(buf, pos)")
                e(ind, f"{v} = {table}[{z}]")
        elif kind in ("array", "map"):
            is_map = kind == "map"
            inner = sch["values"] if is_map else sch["items"]
            e(ind, f"{v} = {{}}" if is_map else f"{v} = []")
            e(ind, "while True:")
            z = self.src.var("z")
            e(ind + 1, f"{z} = buf[pos]")
            e(ind + 1, f"if {z} < 0x80:")
            e(ind + 2, "pos += 1")
            e(ind + 1, "else:")
            e(ind + 2, f"{z}, pos = _ruv(buf, pos)")
            e(ind + 1, f"if not {z}:")
            e(ind + 2, "break")
            e(ind + 1, f"if {z} & 1:")  # a negative count (a block with its size): left to fastavro
            e(ind + 2, "raise _M")
            least = max(self.min_size(inner), 1 if is_map else 0)
            if least:  # garbage counts must not loop for long
                e(ind + 1, f"if ({z} >> 1) * {least} > L - pos:")
                e(ind + 2, "raise _M")
            e(ind + 1, f"for _ in _range({z} >> 1):")
            item = self.src.var("i")
            if is_map:
                key = self.src.var("k")
                self.text(ind + 2, key)
                self.read(inner, item, ind + 2)
                e(ind + 2, f"{v}[{key}] = {item}")
            else:
                self.read(inner, item, ind + 2)
                e(ind + 2, f"{v}.append({item})")
        elif kind == "union":
            # one byte: fastavro reads a negative index from the end of the list, and a longer varint is fine
            # for it; both are left to it.
            null_at, other_at, other = self.s.union_shape(sch)
            z = self.src.var("z")
            e(ind, f"{z} = buf[pos]")
            e(ind, "pos += 1")
            if null_at is not None:
                e(ind, f"if {z} == {_zz(null_at)}:")
                e(ind + 1, f"{v} = None")
                e(ind, f"elif {z} == {_zz(other_at)}:")
            else:
                e(ind, f"if {z} == {_zz(other_at)}:")
            self.read(other, v, ind + 1)
            e(ind, "else:")
            e(ind + 1, "raise _M")
        elif kind == "record":
            self.record(sch, v, ind)
        else:
            raise Unsupported(f"type {kind}")

    def record(self, sch: dict[str, Any], v: str, ind: int) -> None:
        name = sch.get("name", "")
        if name in self.stack:
            raise Unsupported(f"recursive record {name}")
        self.stack.append(name)
        items = []
        for field in sch["fields"]:
            fname = _field_name(field)
            f = self.src.var("f")
            self.read(field["type"], f, ind)
            items.append(f"{fname!r}: {f}")
        self.src.emit(ind, f"{v} = {{{', '.join(items)}}}")
        self.stack.pop()


def reader_source(schema: Any) -> tuple[str, dict[str, Any]]:
    """The generated reader's source and its constants (raises :class:`Unsupported`)."""
    parsed = _parsed(schema)
    s = _Schema(parsed)
    if s.kind(parsed)[0] != "record":
        raise Unsupported("not a record schema")
    gen = _ReaderGen(s)
    gen.src.emit(0, "def read(buf, pos):")
    gen.src.emit(1, "L = _len(buf)")
    gen.record(s.kind(parsed)[1], "r", 1)
    gen.src.emit(1, "if pos > L:")
    gen.src.emit(2, "raise _M")
    gen.src.emit(1, "return r, pos")
    return "\n".join(gen.src.lines) + "\n", gen.src.consts


def reader_for(schema: Any) -> Reader:
    """A generated reader for a record schema (parsed by fastavro or plain JSON data): ``read(buf, pos)``
    returns ``(record, end)`` for the Avro body at ``buf[pos:]``, equal to fastavro's ``schemaless_reader``
    without a reader schema, or raises when the bytes are not on its fast path (then use fastavro: truncated
    or garbage input always raises here). Raises :class:`Unsupported` for a schema it does not cover."""
    source, consts = reader_source(schema)
    return cast(Reader, _compile(source, consts, "read", schema))


def _compile(source: str, consts: dict[str, Any], name: str, schema: Any) -> Callable[..., Any]:
    full = schema.get("name", "record") if isinstance(schema, dict) else "record"
    code = compile(source, f"<avro {name}r {full}>", "exec")
    namespace: dict[str, Any] = {**_NAMESPACE, **consts}
    exec(code, namespace)  # noqa: S102 - our own source, generated from a schema, no input text in it
    return cast(Callable[..., Any], namespace[name])
