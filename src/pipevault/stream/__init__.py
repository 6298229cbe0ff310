"""Multiplexed streaming backup: many writers interleaved onto few devices (seed 004).

Layer: services. May import the facade, the core, format and the foundation.
"""
