"""Analytical cost model (cycles, energy, area) of a HardwareConfig, Mapping and Layer."""
