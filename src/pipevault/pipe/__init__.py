"""The DataPipe engine (seed 002): a shared-memory buffer pool moved through parallel stages.

Layer: core. Imports only the foundation (errors, config, clock, events); knows nothing of
formats or media: a stage is any callable on a buffer.
"""
