Buffer = bytes | bytearray | memoryview

IN_THE_WAY: int
NOT_CREATED: int
NOT_WRITTEN: int

def write_files(
    files: list[tuple[int, str, bool, Buffer, int, int, int, int, int, int, tuple[tuple[bytes, bytes], ...]]],
) -> list[tuple[int, int] | None]: ...
