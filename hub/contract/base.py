"""The base of every contract model and the registry of event type ↔ schema name ↔ model class."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class ContractModel(BaseModel):
    """Immutable, closed (no extra fields) and never echoing input values in validation errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    def to_avro(self) -> dict[str, Any]:
        """The model as the plain data fastavro writes (enums stay StrEnum members, which are str)."""
        return self.model_dump(mode="python")


class ContractRecord(ContractModel):
    """A top-level record on a topic: an agency event or a hub output.

    Subclasses set ``EVENT_TYPE`` (``<agency>.<event>``) and ``SCHEMA_NAME`` (the Avro full name); they
    are registered when the class is created.
    """

    EVENT_TYPE: ClassVar[str]
    SCHEMA_NAME: ClassVar[str]

    _by_event_type: ClassVar[dict[str, type[ContractRecord]]] = {}
    _by_schema_name: ClassVar[dict[str, type[ContractRecord]]] = {}

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "EVENT_TYPE" in cls.__dict__ and "SCHEMA_NAME" in cls.__dict__:
            ContractRecord._by_event_type[cls.EVENT_TYPE] = cls
            ContractRecord._by_schema_name[cls.SCHEMA_NAME] = cls


def model_for_event_type(event_type: str) -> type[ContractRecord] | None:
    """The model class of an event type (``polisen.minor_suspected``), or None."""
    _load_models()
    return ContractRecord._by_event_type.get(event_type)


def model_for_schema_name(schema_name: str) -> type[ContractRecord] | None:
    """The model class of an Avro record full name (``se.samverkan.polisen.MinorSuspected``), or None."""
    _load_models()
    return ContractRecord._by_schema_name.get(schema_name)


def all_models() -> dict[str, type[ContractRecord]]:
    """Every registered model by event type."""
    _load_models()
    return dict(ContractRecord._by_event_type)


def _load_models() -> None:
    import hub.contract.events
    import hub.contract.outputs  # noqa: F401  (importing registers the models)
