"""The storage-agent daemon: master monitor, network agents, authentication (seeds 000, 002).

Layer: services. May import the facade, the core, format and the foundation.
"""
