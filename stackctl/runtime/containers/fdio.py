"""Reading a pipe to its end (the start protocol's pipes: configuration, reports, claims).
Imports only ``os``: the monitor and the setup child use it."""

import os


def read_to_eof(fd: int) -> bytes:
    """Everything ``fd`` gives until EOF; ``fd`` is closed afterwards, also on an error."""
    data = b""
    try:
        while chunk := os.read(fd, 65536):
            data += chunk
    finally:
        os.close(fd)
    return data
