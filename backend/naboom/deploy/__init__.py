"""Helpers that turn the deployment templates under `deploy/` into runnable configs."""
