"""pipevault: a high-speed data mover and storage manager.

Layers (upper may import lower, never the reverse; checked by ``tests/test_layers.py``)::

    cli | web                  presentation
    hsm | stream | server      services
    client | mover             facade
    pipe | media | catalog     core
    format                     pure data (no I/O, no threads)
    errors | config | clock | events   foundation
"""

__version__ = "0.1.0"
