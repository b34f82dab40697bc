"""The event contract: Avro schemas, pydantic models, single-object-encoding serde, evolution checks.

Public entry points::

    from hub.contract import SchemaRegistry, Serde, ContractError, encode, decode, decode_record
    from hub.contract.events import MinorSuspected, MinorSuspectedPayload
    from hub.contract.envelope import Envelope, Subject
"""

from hub.contract.base import ContractRecord, all_models, model_for_event_type, model_for_schema_name
from hub.contract.envelope import Agency, ConsentScope, DataClass, Envelope, Event, OffenceCategory, Subject
from hub.contract.errors import ContractError, SchemaError
from hub.contract.fields import allowed_municipality_codes, municipality_codes, set_allowed_municipality_codes
from hub.contract.registry import SchemaRegistry, SchemaVersion
from hub.contract.serde import Serde, decode, decode_record, encode

__all__ = [
    "Agency",
    "ConsentScope",
    "ContractError",
    "ContractRecord",
    "DataClass",
    "Envelope",
    "Event",
    "OffenceCategory",
    "SchemaError",
    "SchemaRegistry",
    "SchemaVersion",
    "Serde",
    "Subject",
    "all_models",
    "allowed_municipality_codes",
    "decode",
    "decode_record",
    "encode",
    "model_for_event_type",
    "model_for_schema_name",
    "municipality_codes",
    "set_allowed_municipality_codes",
]
