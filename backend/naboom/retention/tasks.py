"""Retention tasks."""
