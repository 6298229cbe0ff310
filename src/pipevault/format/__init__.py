"""Self-describing stream and media format (seeds 002 figs 9, 12, 13 and 004).

Layer: pure data. Imports only the foundation (errors, config, clock, events); does no I/O
and starts no thread, so every structure can be property-tested alone.

The normative specification is ``docs/format.md``. In short: media hold fixed-size
superblocks (default 256 KiB), each carrying records of one session; a session holds
objects (archive header ... footer), an object holds chunks (chunk header, data pieces with
tag headers, chunk footer). :class:`SessionWriter` packs, :class:`Scanner` reads any mix of
sessions back and reports damage precisely, :func:`resume_point` tells a writer where to
continue after a failure. :class:`ChunkEncoder` / :class:`ChunkDecoder` and the functions
of ``_codecs`` are plain callables on buffers, ready to run as DataPipe stages.
"""

from pipevault.format._chunk import ChunkDecoder as ChunkDecoder
from pipevault.format._chunk import ChunkEncoder as ChunkEncoder
from pipevault.format._chunk import EncodedChunk as EncodedChunk
from pipevault.format._chunk import decode_stored as decode_stored
from pipevault.format._codecs import SamplingSelector as SamplingSelector
from pipevault.format._codecs import Selector as Selector
from pipevault.format._codecs import compress as compress
from pipevault.format._codecs import decompress as decompress
from pipevault.format._codecs import fixed as fixed
from pipevault.format._crypto import SessionKeys as SessionKeys
from pipevault.format._events import Affected as Affected
from pipevault.format._events import ChunkRead as ChunkRead
from pipevault.format._events import Damage as Damage
from pipevault.format._events import Event as Event
from pipevault.format._events import ObjectEnded as ObjectEnded
from pipevault.format._events import ObjectStarted as ObjectStarted
from pipevault.format._events import OptionsRead as OptionsRead
from pipevault.format._events import Resumed as Resumed
from pipevault.format._events import SessionEnded as SessionEnded
from pipevault.format._events import SessionStarted as SessionStarted
from pipevault.format._fields import ArchiveFooter as ArchiveFooter
from pipevault.format._fields import ArchiveHeader as ArchiveHeader
from pipevault.format._fields import ObjectStatus as ObjectStatus
from pipevault.format._fields import ObjectType as ObjectType
from pipevault.format._fields import Options as Options
from pipevault.format._fields import SessionFooter as SessionFooter
from pipevault.format._fields import SessionHeader as SessionHeader
from pipevault.format._fields import SessionStatus as SessionStatus
from pipevault.format._framed import FramedObject as FramedObject
from pipevault.format._framed import frame_object as frame_object
from pipevault.format._framed import frame_whole as frame_whole
from pipevault.format._reader import SessionReader as SessionReader
from pipevault.format._records import CHUNK_FOOTER_LEN as CHUNK_FOOTER_LEN
from pipevault.format._records import CHUNK_HEADER_LEN as CHUNK_HEADER_LEN
from pipevault.format._records import ChunkFlags as ChunkFlags
from pipevault.format._records import ChunkFooter as ChunkFooter
from pipevault.format._records import ChunkHeader as ChunkHeader
from pipevault.format._records import Compression as Compression
from pipevault.format._records import DedupAlgo as DedupAlgo
from pipevault.format._records import Encryption as Encryption
from pipevault.format._records import RecordType as RecordType
from pipevault.format._records import Resume as Resume
from pipevault.format._restart import ResumePoint as ResumePoint
from pipevault.format._restart import resume_point as resume_point
from pipevault.format._scanner import Scanner as Scanner
from pipevault.format._scanner import scan as scan
from pipevault.format._scanner import split as split
from pipevault.format._superblock import DEFAULT_SIZE as DEFAULT_SIZE
from pipevault.format._superblock import SuperblockHeader as SuperblockHeader
from pipevault.format._superblock import peek_header as peek_header
from pipevault.format._superblock import verify as verify
from pipevault.format._writer import SessionWriter as SessionWriter

__all__ = [
    "CHUNK_FOOTER_LEN", "CHUNK_HEADER_LEN",
    "DEFAULT_SIZE", "Affected", "ArchiveFooter", "ArchiveHeader", "ChunkDecoder", "ChunkEncoder",
    "ChunkFlags",
    "ChunkFooter", "ChunkHeader", "ChunkRead", "Compression", "Damage", "DedupAlgo", "EncodedChunk",
    "Encryption", "Event", "FramedObject", "ObjectEnded", "ObjectStarted", "ObjectStatus", "ObjectType", "Options",
    "OptionsRead", "RecordType", "Resume", "ResumePoint", "Resumed", "SamplingSelector", "Scanner",
    "Selector", "SessionEnded", "SessionFooter", "SessionHeader",
    "SessionKeys", "SessionReader", "SessionStarted", "SessionStatus", "SessionWriter", "SuperblockHeader",
    "compress", "decode_stored", "decompress", "fixed", "frame_object", "frame_whole", "peek_header", "resume_point",
    "scan",
    "split", "verify",
]
