"""Self-describing stream and media format (seeds 002 figs 9, 12, 13 and 004).

Layer: pure data. Imports only the foundation (errors, config, clock, events); does no I/O
and starts no thread, so every structure can be property-tested alone.
"""
