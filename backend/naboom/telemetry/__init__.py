"""Device telemetry (battery, signal, firmware, location) and the silent-device alert."""
