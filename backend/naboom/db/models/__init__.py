"""Every ORM model, imported together as ``m``."""

from naboom.db.models.audit import AuditEntry
from naboom.db.models.coverage import CoverageReport
from naboom.db.models.devices import Device, DeviceKey, KeyState
from naboom.db.models.escalation import EscalationCondition, EscalationRule, IncidentEscalation
from naboom.db.models.incidents import Incident, IncidentEvent, IncidentSource, IncidentStatus
from naboom.db.models.ingest import IngestRejection, SosReceipt
from naboom.db.models.notify import MessageStatus, OutboundMessage, ResponderContact, SmsAttempt
from naboom.db.models.outbox import OutboxMessage, Webhook
from naboom.db.models.regions import DEFAULT_TIMEZONE, Region
from naboom.db.models.users import AuthSession, Operator, Role
from naboom.db.models.vehicles import Vehicle, VehiclePing

__all__ = (
    "DEFAULT_TIMEZONE",
    "AuditEntry",
    "AuthSession",
    "CoverageReport",
    "Device",
    "DeviceKey",
    "EscalationCondition",
    "EscalationRule",
    "Incident",
    "IncidentEscalation",
    "IncidentEvent",
    "IncidentSource",
    "IncidentStatus",
    "IngestRejection",
    "KeyState",
    "MessageStatus",
    "Operator",
    "OutboundMessage",
    "OutboxMessage",
    "Region",
    "ResponderContact",
    "Role",
    "SmsAttempt",
    "SosReceipt",
    "Vehicle",
    "VehiclePing",
    "Webhook",
)
