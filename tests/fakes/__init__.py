"""Fakes of third-party services the product talks to (only the SMS gateway is faked)."""
