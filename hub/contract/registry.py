"""The schema registry: every schema version by fingerprint and by record name.

Loads ``schemas/**/v<N>.avsc`` (named types resolved across files), and accepts more writer schemas at
run time with :meth:`SchemaRegistry.register` (e.g. read from the compacted ``hub.schemas`` topic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastavro.schema import parse_schema, to_parsing_canonical_form

from hub.contract.errors import SchemaError
from hub.contract.fingerprint import fingerprint_bytes
from hub.contract.schemafiles import SchemaFile, expand, full_name, named_types, read_schema_files


@dataclass(frozen=True)
class SchemaVersion:
    """One version of one record schema, expanded and parsed."""

    name: str
    """Avro full name of the record (``se.samverkan.kommun.YouthActivity``)."""
    type_name: str | None
    """``<group>.<name>`` of the file (the event type), None for a schema registered without one."""
    version: int | None
    """N of ``vN.avsc``; None for a schema registered at run time that matches no local file."""
    schema: dict[str, Any]
    """The expanded (self-contained) schema as JSON data."""
    parsed: Any
    """fastavro's parsed form."""
    canonical_form: str
    fingerprint: bytes
    """8 bytes, little-endian CRC-64-AVRO of :attr:`canonical_form`."""
    path: Path | None = None

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 16 hex digits (byte order as on the wire)."""
        return self.fingerprint.hex()

    def to_json(self) -> str:
        """The expanded schema as compact JSON (what ``hub.schemas`` carries)."""
        return json.dumps(self.schema, ensure_ascii=False, separators=(",", ":"))


def build_version(
    schema: dict[str, Any], type_name: str | None, version: int | None, path: Path | None = None
) -> SchemaVersion:
    """Parse an expanded schema and compute its canonical form and fingerprint."""
    try:
        parsed = parse_schema(schema)
        canonical = to_parsing_canonical_form(parsed)
    except Exception as exc:  # fastavro raises several unrelated types for a bad schema
        raise SchemaError(f"{path or full_name(schema)}: {exc}") from exc
    return SchemaVersion(
        full_name(schema), type_name, version, schema, parsed, canonical, fingerprint_bytes(canonical), path
    )


class SchemaRegistry:
    """Every known schema version, by fingerprint (writer) and by record name (latest = reader)."""

    def __init__(self, schemas_dir: Path | None = None) -> None:
        if schemas_dir is None:
            from hub.settings import HubSettings

            schemas_dir = HubSettings().schemas_dir
        self.schemas_dir = schemas_dir
        self.files = read_schema_files(schemas_dir)
        if not self.files:
            raise SchemaError(f"no schemas found in {schemas_dir}")
        self._library: dict[str, Any] = {}
        for f in self.files:  # sorted by version: the latest definition of a name wins
            named_types(f.schema, None, self._library)
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._by_name: dict[str, dict[int, SchemaVersion]] = {}
        self._latest: dict[str, SchemaVersion] = {}
        """The newest version per name (asked for every message on the hot path)."""
        self._type_names: dict[str, str] = {}
        for f in self.files:
            self._add(self._build(f))

    def _build(self, f: SchemaFile) -> SchemaVersion:
        try:
            expanded = expand(f.schema, self._library)
        except SchemaError as exc:
            raise SchemaError(f"{f.path}: {exc}") from exc
        return build_version(expanded, f.type_name, f.version, f.path)

    def _add(self, sv: SchemaVersion) -> None:
        known = self._by_fingerprint.get(sv.fingerprint)
        if known is not None and known.canonical_form != sv.canonical_form:
            raise SchemaError(f"fingerprint collision between {known.name} and {sv.name}")
        if known is None or known.version is None:
            self._by_fingerprint[sv.fingerprint] = sv
        if sv.version is not None:
            versions = self._by_name.setdefault(sv.name, {})
            versions[sv.version] = sv
            self._latest[sv.name] = versions[max(versions)]
        if sv.type_name is not None:
            self._type_names[sv.name] = sv.type_name

    # -- look-ups -------------------------------------------------------------------------------------

    def by_fingerprint(self, fingerprint: bytes) -> SchemaVersion | None:
        """The writer schema with this 8-byte fingerprint, or None."""
        return self._by_fingerprint.get(fingerprint)

    def latest(self, name: str) -> SchemaVersion | None:
        """The newest local version of a record (the reader schema), or None."""
        return self._latest.get(name)

    def version(self, name: str, version: int) -> SchemaVersion | None:
        """One local version of a record, or None."""
        return self._by_name.get(name, {}).get(version)

    def versions(self, name: str) -> list[SchemaVersion]:
        """All local versions of a record, oldest first."""
        versions = self._by_name.get(name, {})
        return [versions[v] for v in sorted(versions)]

    def names(self) -> list[str]:
        """Full names of all records and named types with a file of their own, sorted."""
        return sorted(self._by_name)

    def type_name(self, name: str) -> str | None:
        """``<group>.<name>`` (the event type) of a record full name."""
        return self._type_names.get(name)

    def all_versions(self) -> list[SchemaVersion]:
        """Every local version of every file, in file order."""
        return [sv for name in self.names() for sv in self.versions(name)]

    def library(self) -> dict[str, Any]:
        """Named type definitions by full name (for resolving references)."""
        return dict(self._library)

    # -- run-time registration ------------------------------------------------------------------------

    def register(self, schema_json: str, type_name: str | None = None) -> SchemaVersion:
        """Add a writer schema (e.g. from the ``hub.schemas`` topic) and return it.

        A schema identical to a local version returns that version; references to known named types are
        resolved. Raises :class:`SchemaError` when it cannot be parsed.
        """
        try:
            schema = json.loads(schema_json)
        except ValueError as exc:
            raise SchemaError(f"registered schema is not JSON: {exc}") from exc
        if not isinstance(schema, dict) or "name" not in schema:
            raise SchemaError("registered schema must be one named type")
        sv = build_version(expand(schema, self._library), type_name or self._type_names.get(full_name(schema)), None)
        known = self._by_fingerprint.get(sv.fingerprint)
        if known is not None:
            return known
        self._add(sv)
        return sv
