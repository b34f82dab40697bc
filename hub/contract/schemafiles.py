"""Reading ``schemas/<group>/<name>/v<N>.avsc`` files and expanding named types across files.

A schema may refer by full name to a named type defined in another file (``se.samverkan.common.Envelope``,
``se.samverkan.common.OffenceCategory``). :func:`expand` inlines the first use of each such type so every
schema becomes self-contained: that expanded form is what fastavro and Apache Avro parse, and what the
parsing canonical form and the fingerprint are computed from.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hub.contract.errors import SchemaError

PRIMITIVES: Final = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_VERSION: Final = re.compile(r"^v(\d+)\.avsc$")

Schema = Any
"""A JSON-decoded Avro schema (a dict, a list for a union, or a type name)."""


@dataclass(frozen=True)
class SchemaFile:
    """One ``.avsc`` file: ``schemas/<group>/<name>/v<version>.avsc``."""

    path: Path
    group: str
    name: str
    version: int
    schema: Schema

    @property
    def type_name(self) -> str:
        """``<group>.<name>``, e.g. ``polisen.minor_suspected`` (the event type for agency events)."""
        return f"{self.group}.{self.name}"

    @property
    def full_name(self) -> str:
        """The Avro full name of the file's named type."""
        return full_name(self.schema)


def read_schema_files(schemas_dir: Path) -> list[SchemaFile]:
    """Every ``<group>/<name>/v<N>.avsc`` below ``schemas_dir``, sorted by type name and version."""
    files = []
    for path in sorted(schemas_dir.glob("*/*/v*.avsc")):
        m = _VERSION.match(path.name)
        if not m:
            continue
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SchemaError(f"{path}: not readable JSON: {exc}") from exc
        if not isinstance(schema, dict) or "name" not in schema:
            raise SchemaError(f"{path}: must hold one named type")
        files.append(SchemaFile(path, path.parent.parent.name, path.parent.name, int(m.group(1)), schema))
    files.sort(key=lambda f: (f.type_name, f.version))
    return files


def full_name(schema: dict[str, Any], namespace: str | None = None) -> str:
    """The full name of a named schema, given the enclosing namespace."""
    name = str(schema["name"])
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def named_types(schema: Schema, namespace: str | None = None, into: dict[str, Any] | None = None) -> dict[str, Any]:
    """All named types (records, enums, fixed) defined in ``schema``, by full name."""
    found: dict[str, Any] = {} if into is None else into
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, namespace, found)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = full_name(schema, namespace)
            found[name] = schema
            namespace = name.rpartition(".")[0] or None
        if kind in ("record", "error"):
            for f in schema.get("fields", []):
                named_types(f["type"], namespace, found)
        elif kind == "array":
            named_types(schema["items"], namespace, found)
        elif kind == "map":
            named_types(schema["values"], namespace, found)
        elif isinstance(kind, dict | list):
            named_types(kind, namespace, found)
    return found


def expand(schema: Schema, library: dict[str, Any]) -> Schema:
    """``schema`` with references to types in ``library`` (full name → definition) inlined at first use.

    Raises :class:`SchemaError` for a reference to a type defined nowhere.
    """
    return _expand(copy.deepcopy(schema), library, None, set())


def _expand(schema: Schema, library: dict[str, Any], namespace: str | None, defined: set[str]) -> Schema:
    if isinstance(schema, str):
        if schema in PRIMITIVES:
            return schema
        name = schema if "." in schema or namespace is None else f"{namespace}.{schema}"
        if name in defined or schema in defined:
            return schema
        if name not in library and schema not in library:
            raise SchemaError(f"unknown named type {schema!r}")
        definition: dict[str, Any] = copy.deepcopy(library[name] if name in library else library[schema])
        definition["name"] = full_name(definition, namespace)
        definition.pop("namespace", None)
        return _expand(definition, library, namespace, defined)
    if isinstance(schema, list):
        return [_expand(b, library, namespace, defined) for b in schema]
    if not isinstance(schema, dict):
        raise SchemaError(f"not a schema: {schema!r}")
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        name = full_name(schema, namespace)
        defined.add(name)
        namespace = name.rpartition(".")[0] or None
    if kind in ("record", "error"):
        for f in schema.get("fields", []):
            f["type"] = _expand(f["type"], library, namespace, defined)
    elif kind == "array":
        schema["items"] = _expand(schema["items"], library, namespace, defined)
    elif kind == "map":
        schema["values"] = _expand(schema["values"], library, namespace, defined)
    elif isinstance(kind, dict | list) or (
        isinstance(kind, str)
        and kind not in PRIMITIVES
        and kind not in ("record", "error", "enum", "fixed", "array", "map")
    ):
        schema["type"] = _expand(kind, library, namespace, defined)
    return schema
