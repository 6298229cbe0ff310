"""Web dashboard and Prometheus metrics: renders the same events and status as the CLI.

Layer: presentation. May import anything below; nothing imports it.
"""
