"""The catalog database: what was stored, where, under which policy, until when.

Layer: core. May import format and the foundation; never pipe, media or anything above.
"""
