"""Coverage tasks."""
