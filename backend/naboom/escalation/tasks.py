"""Escalation tasks."""
