"""Avro single-object encoding of contract records.

Wire format: ``C3 01`` + 8-byte little-endian CRC-64-AVRO fingerprint of the writer schema's parsing
canonical form + the Avro binary body (fastavro's schemaless encoding). Decoding reads with the writer
schema found by fingerprint, resolves to the latest local version of that record (the reader schema) and
validates the result into the pydantic model. Every failure is a :class:`ContractError`.

The bodies are written and read by codecs generated per schema (:mod:`hub.contract.codegen`, compiled once
per fingerprint and cached) when the writer schema is the reader schema; they give fastavro's bytes and
values. Whatever they do not take (a value off their fast path, bytes they refuse, a schema they do not
cover) and every resolution between versions goes to fastavro, which alone decides errors and their reasons.
"""

from __future__ import annotations

import io
from functools import lru_cache
from typing import Any, Final

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from hub.contract.base import ContractRecord, model_for_schema_name
from hub.contract.codegen import Reader, Unsupported, Writer, reader_for, writer_for
from hub.contract.errors import ContractError
from hub.contract.registry import SchemaRegistry, SchemaVersion

MAGIC: Final = b"\xc3\x01"
HEADER_LEN: Final = len(MAGIC) + 8


class Serde:
    """Encoder and decoder bound to one :class:`SchemaRegistry`."""

    def __init__(self, registry: SchemaRegistry | None = None) -> None:
        self.registry = registry if registry is not None else SchemaRegistry()
        self._writers: dict[bytes, tuple[SchemaVersion, bytes, Writer | None]] = {}
        self._readers: dict[bytes, tuple[SchemaVersion, Reader | None]] = {}

    # -- generated codecs -----------------------------------------------------------------------------

    def _writer(self, sv: SchemaVersion) -> tuple[SchemaVersion, bytes, Writer | None]:
        """``(sv, header, generated writer or None)`` for a writer schema, cached by fingerprint."""
        entry = self._writers.get(sv.fingerprint)
        if entry is None or entry[0] is not sv:
            entry = (sv, MAGIC + sv.fingerprint, _codec(sv, "writer"))
            self._writers[sv.fingerprint] = entry
        return entry

    def _reader(self, sv: SchemaVersion) -> Reader | None:
        """The generated reader of a writer schema read without resolution, or None; cached by fingerprint."""
        entry = self._readers.get(sv.fingerprint)
        if entry is None or entry[0] is not sv:
            entry = (sv, _codec(sv, "reader"))
            self._readers[sv.fingerprint] = entry
        return entry[1]

    def _encode(self, sv: SchemaVersion, datum: Any) -> bytes:
        _, head, write = self._writer(sv)
        if write is not None:
            try:
                return write(datum, head)
            except Exception:  # noqa: S110 - off the generated fast path: fastavro writes it or says why not
                pass
        out = io.BytesIO()
        out.write(head)
        try:
            schemaless_writer(out, sv.parsed, datum)
        except Exception as exc:  # fastavro raises ValueError, TypeError, OverflowError, ...
            raise ContractError("invalid_payload", f"cannot encode {sv.name}: {type(exc).__name__}") from None
        return out.getvalue()

    # -- encode ---------------------------------------------------------------------------------------

    def writer_for(self, model: ContractRecord, version: int | None = None) -> SchemaVersion:
        """The writer schema for a model: ``version`` if given, else the latest local version."""
        name = type(model).SCHEMA_NAME
        sv = self.registry.latest(name) if version is None else self.registry.version(name, version)
        if sv is None:
            raise ContractError("unknown_event_type", f"no schema {name} version {version or 'latest'}")
        return sv

    def encode(self, model: ContractRecord, version: int | None = None) -> bytes:
        """Single-object encoding of ``model`` (written with the latest schema unless ``version``)."""
        sv = self.writer_for(model, version)
        datum = model.to_avro()
        latest = self.registry.latest(sv.name)
        if latest is not None and latest.fingerprint != sv.fingerprint:  # models match the latest version
            _check_no_dropped(datum, sv.schema, "")
        return self._encode(sv, datum)

    def encode_datum(self, schema_name: str, datum: dict[str, Any]) -> bytes:
        """Single-object encoding of plain data in the latest version of ``schema_name``, without a model:
        the worker's hot path, for values it built from validated events (fastavro still refuses a datum
        that does not fit the schema)."""
        sv = self.registry.latest(schema_name)
        if sv is None:
            raise ContractError("unknown_event_type", f"no schema {schema_name}")
        return self._encode(sv, datum)

    # -- decode ---------------------------------------------------------------------------------------

    def decode_record(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """Decode to ``(record full name, plain data)`` in the latest reader schema, without pydantic."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ContractError("undecodable", "message value is not bytes")
        data = bytes(data)
        if len(data) < len(MAGIC) or data[:2] != MAGIC:
            if len(data) < len(MAGIC) and MAGIC.startswith(data):
                raise ContractError("truncated", f"message of {len(data)} bytes ends inside the header")
            raise ContractError("undecodable", "message does not start with the Avro single-object marker C3 01")
        if len(data) < HEADER_LEN:
            raise ContractError("truncated", f"message of {len(data)} bytes ends inside the header")
        writer = self.registry.by_fingerprint(data[2:HEADER_LEN])
        if writer is None:
            raise ContractError("unknown_fingerprint", f"no schema with fingerprint {data[2:HEADER_LEN].hex()}")
        reader = self.registry.latest(writer.name) or writer
        if reader.fingerprint == writer.fingerprint:
            read = self._reader(writer)
            if read is not None:
                try:
                    fast, end = read(data, HEADER_LEN)
                except Exception:  # noqa: S110 - not on the generated fast path: fastavro reads it or says why not
                    pass
                else:
                    if end == len(data):
                        return reader.name, fast
        body = io.BytesIO(data)
        body.seek(HEADER_LEN)
        try:
            if reader.fingerprint == writer.fingerprint:
                record = schemaless_reader(body, writer.parsed, None)
            else:
                record = schemaless_reader(body, writer.parsed, reader.parsed)
        except (EOFError, StopIteration):
            raise ContractError("truncated", f"{writer.name} body ends early") from None
        except Exception as exc:  # anything fastavro raises on garbage: ValueError, IndexError, ...
            raise ContractError("undecodable", f"{writer.name} body is not valid Avro ({type(exc).__name__})") from None
        if body.tell() > len(data):
            raise ContractError("truncated", f"{writer.name} body ends early")
        if body.tell() != len(data):
            raise ContractError("undecodable", f"{len(data) - body.tell()} bytes after the {writer.name} body")
        if not isinstance(record, dict):
            raise ContractError("undecodable", f"{writer.name} is not a record")
        return reader.name, record

    def decode(self, data: bytes) -> ContractRecord:
        """Decode and validate into the record's pydantic model."""
        name, record = self.decode_record(data)
        model = model_for_schema_name(name)
        if model is None:
            raise ContractError("unknown_event_type", f"no model for record {name}")
        return validate(model, record)


def validate(model: type[ContractRecord], data: dict[str, Any]) -> ContractRecord:
    """``model.model_validate(data)`` with every failure as a ContractError (``invalid_payload``)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _to_contract_error(model, exc) from None
    except Exception as exc:  # a validator that raised something else is still bad input
        raise ContractError("invalid_payload", f"{model.EVENT_TYPE}: {type(exc).__name__}") from None


def _to_contract_error(model: type[ContractRecord], exc: ValidationError) -> ContractError:
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}" if loc else str(err["msg"]))
    first = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
    return ContractError("invalid_payload", f"{model.EVENT_TYPE}: " + "; ".join(parts), first or None)


def _check_no_dropped(datum: Any, schema: Any, path: str) -> None:
    """Refuse to encode a value the writer schema has no field for (it would be silently dropped)."""
    if isinstance(schema, list):
        records = [b for b in schema if isinstance(b, dict) and b.get("type") == "record"]
        if len(records) == 1 and isinstance(datum, dict):
            _check_no_dropped(datum, records[0], path)
        return
    if not (isinstance(schema, dict) and schema.get("type") == "record" and isinstance(datum, dict)):
        return
    fields = {f["name"]: f["type"] for f in schema["fields"]}
    for key, value in datum.items():
        where = f"{path}.{key}" if path else key
        if key not in fields:
            if value is not None:
                raise ContractError("invalid_payload", f"{where} is not in schema {schema['name']}", where)
        else:
            _check_no_dropped(value, fields[key], where)


_CODECS: dict[tuple[str, str], Any] = {}
"""Generated codecs by (kind, expanded schema JSON), shared by every Serde (None: fastavro for that schema)."""


def _codec(sv: SchemaVersion, kind: str) -> Any:
    """The generated writer or reader of a schema version, or None when the generator does not cover it."""
    key = (kind, sv.to_json())
    if key not in _CODECS:
        try:
            _CODECS[key] = writer_for(sv.parsed) if kind == "writer" else reader_for(sv.parsed)
        except Unsupported:  # a type or shape the generator does not cover
            _CODECS[key] = None
        except Exception:  # a generator fault must never cost an encoding: fastavro does it all
            _CODECS[key] = None
    return _CODECS[key]


@lru_cache(maxsize=1)
def default_serde() -> Serde:
    """A process-wide :class:`Serde` over the schemas in ``HubSettings().schemas_dir``."""
    return Serde()


def encode(model: ContractRecord, version: int | None = None) -> bytes:
    """Encode with :func:`default_serde`."""
    return default_serde().encode(model, version)


def decode(data: bytes) -> ContractRecord:
    """Decode and validate with :func:`default_serde`."""
    return default_serde().decode(data)


def decode_record(data: bytes) -> tuple[str, dict[str, Any]]:
    """Decode without pydantic with :func:`default_serde`."""
    return default_serde().decode_record(data)
