"""Network agents of the DataPipe (seed 002, figures 2B, 2D, 3A-3C and 7): a pipe whose two
halves run on two machines, joined by N parallel authenticated TCP connections.

- :mod:`~pipevault.pipe.net.wire`: the frames (docs/protocol.md has the byte tables).
- :mod:`~pipevault.pipe.net.auth`: HMAC challenge and response on every connection.
- :mod:`~pipevault.pipe.net.agents`: :class:`NetSender` (pseudo-tail, one instance per
  connection, ``sendmsg`` from pool buffers) and :class:`NetReceiver` (pseudo-head,
  ``recv_into`` pool buffers, resequencing).
- :mod:`~pipevault.pipe.net.checkpoint`: durable offsets acknowledged to the sender, for
  restart from the point of failure.
- :mod:`~pipevault.pipe.net.client`: Extend_Pipe from the client side (:class:`RemotePipe`)
  and the control port (:class:`ControlClient`). The daemon is :mod:`pipevault.server`.
"""

from pipevault.pipe.net.agents import NetReceiver as NetReceiver
from pipevault.pipe.net.agents import NetSender as NetSender
from pipevault.pipe.net.checkpoint import Checkpoint as Checkpoint
from pipevault.pipe.net.client import ControlClient as ControlClient
from pipevault.pipe.net.client import Credentials as Credentials
from pipevault.pipe.net.client import RemotePipe as RemotePipe
from pipevault.pipe.net.link import DataLink as DataLink

__all__ = ["Checkpoint", "ControlClient", "Credentials", "DataLink", "NetReceiver", "NetSender",
           "RemotePipe"]
