"""Every ORM model, imported together as ``m``."""

from naboom.db.models.devices import Device, DeviceKey, KeyState
from naboom.db.models.incidents import Incident, IncidentEvent, IncidentSource, IncidentStatus
from naboom.db.models.ingest import IngestRejection, SosReceipt
from naboom.db.models.users import Operator, Role

__all__ = (
    "Device",
    "DeviceKey",
    "Incident",
    "IncidentEvent",
    "IncidentSource",
    "IncidentStatus",
    "IngestRejection",
    "KeyState",
    "Operator",
    "Role",
    "SosReceipt",
)
