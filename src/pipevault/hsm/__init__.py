"""DMAPI-style data management over fanotify, and the HSM daemon (seeds 001 and 003).

Layer: services. May import the facade, the core, format and the foundation.
"""
