"""naboom-sim: what a field device, a patrol vehicle or a crowd of them sends to Naboom NeighborNet.

Device firmware, not a backend client: it speaks only the external contract (signed SOS over
MQTT, vehicle pings and the live feed over HTTP) and never imports the ``naboom`` package.
"""

__version__ = "0.1.0"
