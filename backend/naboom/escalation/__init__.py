"""Escalation."""
