"""httpx, imported without trio, anyio, zstandard and httpx's own command line.

httpcore (under httpx) imports trio and anyio at import time when they are installed, only to
offer async locks that the blocking client never uses, and httpx imports its command-line
module (rich, click, pygments); here that costs 100-200 ms of every ``stackctl pull`` (and the
CLI is meant to import no event loop at all). While httpx and httpcore are first imported
these names are hidden; they import normally afterwards. In a process that already has them
(the agent has trio), nothing is hidden.
"""

from __future__ import annotations

import sys

if "httpcore" not in sys.modules:
    # httpx._main is httpx's own command line (it imports rich, click and pygments): not needed
    # zstandard: only for zstd Content-Encoding, which registries do not use (layers.py imports
    # it itself for zstd layers)
    _hidden = [name for name in ("trio", "anyio", "httpx._main", "zstandard") if name not in sys.modules]
    for _name in _hidden:
        sys.modules[_name] = None  # type: ignore[assignment]  # `import trio` raises ImportError
    try:
        import httpcore  # noqa: F401 - httpx imports it lazily, when its first client is made
        import httpx
    finally:
        for _name in _hidden:
            if sys.modules.get(_name, 0) is None:
                del sys.modules[_name]
else:
    import httpx

# httpcore reads a response 64 KiB per recv(); each read then goes through h11's buffer and a
# few Python frames. Layers are tens of MB: 1 MiB reads take ~40% less CPU per downloaded byte
# (measured: 48 MB in 0.10 s instead of 0.17 s). Only the registry client uses httpx here.
import httpcore._sync.http11 as _http11  # noqa: E402

_http11.HTTP11Connection.READ_NUM_BYTES = max(_http11.HTTP11Connection.READ_NUM_BYTES, 1 << 20)

__all__ = ["httpx"]
