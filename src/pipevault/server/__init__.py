"""The storage-agent daemon: master monitor, network agents, authentication (seeds 000, 002).

Layer: services. May import the facade, the core, format and the foundation.

- :mod:`~pipevault.server.daemon`: `pipevault serve` (TCP control/data port, local socket).
- :mod:`~pipevault.server.monitor`: the Master_Monitor: Extend_Pipe, STOP_PIPE, STATUS,
  Initiate_Pipe and SEND_IDENT (:mod:`~pipevault.server.local`).
- :mod:`~pipevault.server.session`: one pipe half run for a remote node.
- :mod:`~pipevault.server.halves`: the heads and tails a client may ask for, confined to the
  node's own area; other packages add theirs with :func:`~pipevault.server.halves.register`.
- :mod:`~pipevault.server.nodes`: registered nodes and their secrets.
- :mod:`~pipevault.server.relay`, :mod:`~pipevault.server.netns`: a delaying relay and
  namespace pairs, for tests and `pipevault bench net` (:mod:`~pipevault.server.bench`).

The client side (Extend_Pipe, the network agents, checkpoints) is :mod:`pipevault.pipe.net`.

Plugging a backup or restore into it::

    # client (mover or cli): push a stream to the server's "store" tail
    creds = load_credentials(node, secret_file)            # pipevault.pipe.net.client
    remote = RemotePipe.extend(server, creds, direction="push", module="store",
                               params={...}, connections=4, resume=resume)
    pipe = Pipe([...local stages starting the stream at remote.resume_from...,
                 remote.agent_stage()], buffer_size=remote.buffer_size,
                max_buffers=remote.max_buffers, name=remote.pipe_name)
    remote.run(pipe)             # returns once the server's tail completed (DONE)
    remote.remote_result         # {"bytes", "durable", ...what the tail's on_success returned}

    # server (a module of this package, imported by the daemon): the tail itself
    def build(req: HalfRequest) -> Half:       # req.node, req.root (its own area), req.params
        ckpt = Checkpoint(state_path, start)   # the tail calls ckpt.durable(stream_bytes)
        return Half([StageSpec(...)], ckpt, start, on_success=commit, on_failure=discard)
    register("push", "store", build)

A restore is the mirror image: ``direction="pull"``, a head registered with
``register("pull", name, build)``, and the local pipe starting with ``remote.agent_stage()``.
"""
