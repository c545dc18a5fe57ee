"""Images travel from the CLI's machine to the nodes that need them (``up`` on a cluster, no
registry needed): over the user's SSH (OpenSSH), only the layers a node lacks, compressed,
each node in parallel, a progress line (or bar, on a terminal) per node.

Per node: one ``ssh NODE stackctl image have IMAGE-IDS LAYER-DIGESTS`` says what it has; an
image it has (same id) is skipped; otherwise ``image save`` leaves out the layers the node
has, the archive is zstd-compressed on the way, and ``ssh NODE stackctl image load -q``
stores it (a layer it has comes from its own store). The image id is the digest of its
config, so every node runs the very same image.
"""

from __future__ import annotations

import concurrent.futures
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import StackctlError

#: bytes of archive per write to ssh's stdin
CHUNK = 1 << 20


class ShipError(StackctlError):
    """An image could not be sent to a node."""


@dataclass
class Shipment:
    node: str
    refs: list[str]
    sent_bytes: int = 0
    layers_sent: int = 0
    layers_skipped: int = 0
    skipped_images: list[str] = field(default_factory=list)


def _layers(store: Any, ref: str) -> tuple[str, list[str]]:
    img = store.resolve(ref)
    manifest = store.read_json_blob(img.manifest_digest)
    return img.id, [lay["digest"] for lay in manifest["layers"]]


class _Counter:
    """A file-like sink that zstd-compresses into ssh's stdin and counts the bytes."""

    def __init__(self, pipe: Any, on_bytes: Callable[[int], None]) -> None:
        import zstandard

        self.pipe = pipe
        self.on_bytes = on_bytes
        self.writer = zstandard.ZstdCompressor(level=3).stream_writer(_Raw(pipe, on_bytes),
                                                                      closefd=False)

    def write(self, data: bytes) -> int:
        self.writer.write(data)
        return len(data)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Raw:
    def __init__(self, pipe: Any, on_bytes: Callable[[int], None]) -> None:
        self.pipe, self.on_bytes = pipe, on_bytes

    def write(self, data: bytes) -> int:
        self.pipe.write(data)
        self.on_bytes(len(data))
        return len(data)

    def flush(self) -> None:
        self.pipe.flush()


def ship_to_node(store: Any, ssh: Callable[[list[str]], list[str]], node: str,
                 refs: Sequence[str], *, on_bytes: Callable[[int], None] = lambda n: None
                 ) -> Shipment:
    """Send ``refs`` to one node. ``ssh(argv)``: the ssh command line running ``stackctl
    ARGV`` on the node (:func:`stackctl.cli.remote.ssh_argv`)."""
    result = Shipment(node, list(refs))
    wanted: list[str] = []
    layers: dict[str, list[str]] = {}
    ids: dict[str, str] = {}
    for ref in refs:
        ids[ref], layers[ref] = _layers(store, ref)
    names = [f"image:{i}" for i in ids.values()] + sorted({d for ls in layers.values()
                                                           for d in ls})
    p = subprocess.run(ssh(["image", "have", *names]), capture_output=True, timeout=120)
    if p.returncode != 0:
        raise ShipError(f"node {node}: cannot ask which layers it has: "
                        f"{p.stderr.decode(errors='replace').strip()[-300:]}",
                        hint=f"check `stackctl node ls` and `ssh` to {node}")
    have = set(p.stdout.decode().split())
    for ref in refs:
        if f"image:{ids[ref]}" in have:
            result.skipped_images.append(ref)
        else:
            wanted.append(ref)
    if not wanted:
        return result
    omit = {d for ref in wanted for d in layers[ref] if d in have}
    result.layers_skipped = len(omit)
    result.layers_sent = len({d for ref in wanted for d in layers[ref]} - omit)
    from stackctl.runtime.images import archive

    proc = subprocess.Popen(ssh(["image", "load", "-q"]), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stdin is not None

    def count(n: int) -> None:
        result.sent_bytes += n
        on_bytes(n)

    try:
        sink = _Counter(proc.stdin, count)
        archive.save(store, wanted, sink, omit=omit)  # type: ignore[arg-type]
        sink.close()
        proc.stdin.close()
    except BrokenPipeError:
        pass
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    err = proc.stderr.read() if proc.stderr else b""
    if proc.wait() != 0:
        raise ShipError(f"node {node}: loading {', '.join(wanted)} failed: "
                        f"{err.decode(errors='replace').strip()[-300:]}")
    return result


def ship(store: Any, plan: Mapping[str, Sequence[str]],
         ssh_for: Callable[[str], Callable[[list[str]], list[str]]], *,
         out: Any = None) -> list[Shipment]:
    """Send each node its images (``plan``: node -> refs), every node at once. ``out``: a
    progress renderer with ``event(dict)`` (one line per node when done; a live byte count
    on a terminal)."""
    if not plan:
        return []
    lock = threading.Lock()
    done: list[Shipment] = []

    def one(node: str) -> Shipment:
        if out is not None:
            out.event({"service": "", "action": "image", "status": "started",
                       "message": f"sending {', '.join(plan[node])} to {node}"})
        s = ship_to_node(store, ssh_for(node), node, plan[node])
        with lock:
            done.append(s)
        if out is not None:
            what = (f"{node}: up to date" if not s.layers_sent and not s.sent_bytes else
                    f"{node}: {s.layers_sent} layer(s) sent ({s.sent_bytes / 1e6:.1f} MB "
                    f"compressed), {s.layers_skipped} already there")
            out.event({"service": "", "action": "image", "status": "done", "message": what})
        return s

    errors: list[str] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, len(plan))) as pool:
        futures = {pool.submit(one, node): node for node in sorted(plan)}
        for f in concurrent.futures.as_completed(futures):
            try:
                f.result()
            except StackctlError as exc:
                errors.append(exc.message)
    if errors:
        raise ShipError("; ".join(sorted(errors)),
                        hint="the images were not sent; nothing was deployed")
    return done
