"""Storage media behind one interface with declared capabilities: disk, tape, optical.

Layer: core. May import format and the foundation; never pipe, catalog or anything above.
"""
