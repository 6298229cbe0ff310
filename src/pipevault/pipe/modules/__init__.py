"""Built-in modules for real pipes: file reader and writer, compressors, hasher, cipher, sinks.

Each is a class whose instances are made by the stage's factory (``functools.partial`` of
the class with its arguments), so every one can run as a thread or as a process.
"""

from pipevault.pipe.modules.compress import Lz4Compress as Lz4Compress
from pipevault.pipe.modules.compress import Lz4Decompress as Lz4Decompress
from pipevault.pipe.modules.compress import ZstdCompress as ZstdCompress
from pipevault.pipe.modules.compress import ZstdDecompress as ZstdDecompress
from pipevault.pipe.modules.crypto import AesGcmDecrypt as AesGcmDecrypt
from pipevault.pipe.modules.crypto import AesGcmEncrypt as AesGcmEncrypt
from pipevault.pipe.modules.files import FileReader as FileReader
from pipevault.pipe.modules.files import FileWriter as FileWriter
from pipevault.pipe.modules.sinks import Discard as Discard
from pipevault.pipe.modules.sinks import Passthrough as Passthrough
from pipevault.pipe.modules.sinks import Xxh3Hasher as Xxh3Hasher

__all__ = ["AesGcmDecrypt", "AesGcmEncrypt", "Discard", "FileReader", "FileWriter", "Lz4Compress",
           "Lz4Decompress", "Passthrough", "Xxh3Hasher", "ZstdCompress", "ZstdDecompress"]
