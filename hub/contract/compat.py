"""Schema evolution check: BACKWARD-transitive with Apache Avro's own compatibility checker.

For every record with more than one version, each version N as reader must read data written with every
earlier version (1..N-1). Schemas are expanded (named types across files inlined) before Avro parses them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from hub.contract.registry import SchemaRegistry, SchemaVersion


@dataclass(frozen=True)
class Incompatibility:
    """A reader version that cannot read data written with an earlier version."""

    record: str
    reader_version: int
    writer_version: int
    kinds: tuple[str, ...]
    locations: tuple[str, ...]
    messages: tuple[str, ...]

    def describe(self) -> str:
        """One readable line."""
        return (
            f"{self.record}: v{self.reader_version} cannot read data written with v{self.writer_version}: "
            f"{'; '.join(self.messages)} (at {', '.join(self.locations)}; {', '.join(self.kinds)})"
        )

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "record": self.record,
            "reader_version": self.reader_version,
            "writer_version": self.writer_version,
            "kinds": list(self.kinds),
            "locations": list(self.locations),
            "messages": list(self.messages),
            "description": self.describe(),
        }


def check_pair(reader: SchemaVersion, writer: SchemaVersion) -> Incompatibility | None:
    """Whether ``reader`` can read data written with ``writer``; None when compatible."""
    r = avro.schema.parse(json.dumps(reader.schema))
    w = avro.schema.parse(json.dumps(writer.schema))
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]  # avro is untyped
    result = checker.get_compatibility(r, w)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return None
    return Incompatibility(
        record=reader.name,
        reader_version=reader.version or 0,
        writer_version=writer.version or 0,
        kinds=tuple(sorted({str(getattr(k, "name", k)) for k in result.incompatibilities})),
        locations=tuple(sorted(result.locations)),
        messages=tuple(sorted(result.messages)),
    )


def check_backward_transitive(registry: SchemaRegistry) -> list[Incompatibility]:
    """Every incompatibility between a version and any earlier version of the same record."""
    found = []
    for name in registry.names():
        versions = registry.versions(name)
        for i, reader in enumerate(versions):
            for writer in versions[:i]:
                problem = check_pair(reader, writer)
                if problem is not None:
                    found.append(problem)
    return found


def check_schemas_dir(schemas_dir: Path | None = None) -> list[Incompatibility]:
    """Load ``schemas_dir`` (default: the settings') and check it."""
    return check_backward_transitive(SchemaRegistry(schemas_dir))
