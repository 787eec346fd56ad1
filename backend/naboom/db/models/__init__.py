"""Every ORM model, imported together as ``m``."""

from naboom.db.models.audit import AuditEntry
from naboom.db.models.devices import Device, DeviceKey, KeyState
from naboom.db.models.incidents import Incident, IncidentEvent, IncidentSource, IncidentStatus
from naboom.db.models.ingest import IngestRejection, SosReceipt
from naboom.db.models.regions import DEFAULT_TIMEZONE, Region
from naboom.db.models.users import AuthSession, Operator, Role
from naboom.db.models.vehicles import Vehicle, VehiclePing

__all__ = (
    "DEFAULT_TIMEZONE",
    "AuditEntry",
    "AuthSession",
    "Device",
    "DeviceKey",
    "Incident",
    "IncidentEvent",
    "IncidentSource",
    "IncidentStatus",
    "IngestRejection",
    "KeyState",
    "Operator",
    "Region",
    "Role",
    "SosReceipt",
    "Vehicle",
    "VehiclePing",
)
