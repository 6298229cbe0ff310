"""A client process for the network-namespace tests (run inside a namespace with
``ip netns exec``): pushes or pulls one file and prints one JSON line with the outcome.

    python netns_client.py push|pull ADDRESS NODE SECRET_HEX LOCAL REMOTE
                           [--resume] [--connections N] [--pause S]

Exit status: 0, or the exit code of the pipevault error (its JSON has code and message).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipevault.errors import PipevaultError
from pipevault.pipe.net import Credentials

sys.path.insert(0, str(Path(__file__).parent))
from server_helpers import SlowReader, pull, push


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("op", choices=["push", "pull"])
    ap.add_argument("address")
    ap.add_argument("node")
    ap.add_argument("secret")
    ap.add_argument("local")
    ap.add_argument("remote")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--pause", type=float, default=0.0)
    args = ap.parse_args()
    creds = Credentials(args.node, bytes.fromhex(args.secret))
    try:
        if args.op == "push":
            slow = (lambda offset: SlowReader(args.local, args.pause, offset)) if args.pause else None
            remote, result = push(args.address, creds, Path(args.local), args.remote,
                                  connections=args.connections, resume=args.resume, source=slow)
            out = {"ok": True, "resume_from": remote.resume_from, "bytes_moved": result.bytes_moved,
                   "remote": remote.remote_result}
        else:
            result = pull(args.address, creds, args.remote, Path(args.local), args.connections)
            out = {"ok": True, "bytes_moved": result.bytes_moved}
    except PipevaultError as exc:
        print(json.dumps({"ok": False, "code": exc.code, "message": exc.message}), flush=True)
        return exc.exit_code
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
