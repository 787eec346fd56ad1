"""The control-room monitor's built files (``frontend/dist``), served by the API at ``/monitor/``."""
