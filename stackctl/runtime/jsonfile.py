"""Writing the runtime's JSON records (container config/meta/state, volume metadata)."""

from __future__ import annotations

import contextlib
import json
import _thread
import os
from typing import Any

from stackctl.errors import writing


def write_json(path: str, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON atomically: readers see the old file or the new
    one, never half of one (they need no lock). The temporary file is unique to this process
    and removed on failure; a full disk is one :class:`~stackctl.errors.DiskFullError`."""
    tmp = f"{path}.tmp{os.getpid()}.{_thread.get_ident()}"  # threads write at once too
    with writing(path):
        try:
            with open(tmp, "w") as f:
                json.dump(obj, f)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
