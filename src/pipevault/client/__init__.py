"""Application API with buffer copy elimination, in the style of the Storage Protect API (seed 000).

Layer: facade. May import the core, format and the foundation; never mover.
"""
