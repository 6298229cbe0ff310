"""Data movers: backup, archive, restore and retrieve jobs wiring pipe, format, media, catalog.

Layer: facade. May import the core (pipe, media, catalog), format and the foundation.
"""
