"""Naboom NeighborNet: signed panic alerts from the field to the control room."""
