"""The DataPipe engine (seed 002): a shared-memory buffer pool moved through parallel stages.

Layer: core. Imports only the foundation (errors, config, clock, events); knows nothing of
formats or media: a stage is any callable on a buffer.

Typical use::

    from pipevault.pipe import Pipe, StageSpec
    from pipevault.pipe.modules import FileReader, ZstdCompress, FileWriter

    Pipe([StageSpec("read", partial(FileReader, "in")),
          StageSpec("zstd", ZstdCompress, instances=2, allocates=True),
          StageSpec("write", partial(FileWriter, "out.zst"))]).run()
"""

from pipevault.pipe._context import Buffer as Buffer
from pipevault.pipe._context import StageContext as StageContext
from pipevault.pipe._gc import bulk_gc as bulk_gc
from pipevault.pipe._module import InPlace as InPlace
from pipevault.pipe._module import Module as Module
from pipevault.pipe._module import Sink as Sink
from pipevault.pipe._module import Source as Source
from pipevault.pipe._module import StageSpec as StageSpec
from pipevault.pipe._module import Transform as Transform
from pipevault.pipe._names import sweep_stale as sweep_stale
from pipevault.pipe._pipe import Pipe as Pipe
from pipevault.pipe._pipe import PipeResult as PipeResult
from pipevault.pipe._pipe import preload_process_modules as preload_process_modules
from pipevault.pipe._status import PipeStatus as PipeStatus
from pipevault.pipe._status import StageStatus as StageStatus

__all__ = ["Buffer", "InPlace", "Module", "Pipe", "PipeResult", "PipeStatus", "Sink", "Source",
           "StageContext", "StageSpec", "StageStatus", "Transform", "bulk_gc", "preload_process_modules", "sweep_stale"]
