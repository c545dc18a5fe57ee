"""How images look to users (pure): Docker's size and age strings, ``image inspect`` and
``image history`` shapes."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from stackctl import humanize as _humanize
from stackctl.runtime.images.refs import short_id
from stackctl.runtime.images.store import Image



def human_size(size: float, precision: int = 3) -> str:
    """``docker images`` sizes: three significant digits."""
    return _humanize.human_size(size, precision)


human_duration = _humanize.human_duration


def parse_time(text: str) -> _dt.datetime | None:
    """RFC 3339 with up to nanoseconds -> aware datetime (None if unparsable/empty)."""
    if not text:
        return None
    t = text.strip().replace("Z", "+00:00")
    if "." in t:
        head, frac = t.split(".", 1)
        digits = "".join(c for c in frac if c.isdigit())
        tz = frac[len(digits):]
        t = f"{head}.{digits[:6].ljust(6, '0')}{tz}"
    try:
        dt = _dt.datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=_dt.timezone.utc)


def ago(text: str, now: _dt.datetime | None = None) -> str:
    dt = parse_time(text)
    if dt is None:
        return "N/A"
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return human_duration(max(0.0, (now - dt).total_seconds())) + " ago"


def split_tag(repo_tag: str) -> tuple[str, str]:
    slash = repo_tag.rfind("/")
    colon = repo_tag.rfind(":")
    if colon > slash:
        return repo_tag[:colon], repo_tag[colon + 1:]
    return repo_tag, "latest"


def ls_rows(images: list[Image], *, show_all_tags: bool = True, now: _dt.datetime | None = None) -> list[dict[str, str]]:
    """Rows of ``image ls``: one per tag, ``<none>`` for dangling images."""
    rows = []
    for img in images:
        tags = img.repo_tags or ["<none>:<none>"]
        for t in tags:
            repo, tag = ("<none>", "<none>") if t == "<none>:<none>" else split_tag(t)
            rows.append({
                "Repository": repo, "Tag": tag, "ID": short_id(img.id), "CreatedSince": ago(img.created, now),
                "CreatedAt": img.created, "Size": human_size(img.size), "Containers": "N/A",
                "Digest": "<none>",
            })
    return rows


def inspect(img: Image) -> dict[str, Any]:
    """The shape of ``docker image inspect`` (fields that apply to a local store)."""
    c = img.config
    cfg = dict(c.get("config") or {})
    container_cfg = {
        "Hostname": "", "Domainname": "", "User": cfg.get("User", ""), "AttachStdin": False,
        "AttachStdout": False, "AttachStderr": False, "ExposedPorts": cfg.get("ExposedPorts"),
        "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": cfg.get("Env"),
        "Cmd": cfg.get("Cmd"), "Healthcheck": cfg.get("Healthcheck"), "ArgsEscaped": cfg.get("ArgsEscaped"),
        "Image": "", "Volumes": cfg.get("Volumes"), "WorkingDir": cfg.get("WorkingDir", ""),
        "Entrypoint": cfg.get("Entrypoint"), "OnBuild": cfg.get("OnBuild"), "Labels": cfg.get("Labels"),
        "StopSignal": cfg.get("StopSignal"), "Shell": cfg.get("Shell"),
    }
    container_cfg = {k: v for k, v in container_cfg.items() if v is not None or k in ("Cmd", "Entrypoint", "Env", "Labels", "Volumes", "OnBuild")}
    return {
        "Id": img.id,
        "RepoTags": list(img.repo_tags),
        "RepoDigests": [],
        "Parent": "",
        "Comment": (c.get("history") or [{}])[-1].get("comment", "") if c.get("history") else "",
        "Created": img.created,
        "DockerVersion": "",
        "Author": c.get("author", ""),
        "Config": container_cfg,
        "Architecture": c.get("architecture", ""),
        "Variant": c.get("variant"),
        "Os": c.get("os", ""),
        "Size": img.size,
        "GraphDriver": {"Name": "overlay", "Data": {
            "LowerDir": ":".join(reversed(img.layer_dirs())), }},
        "RootFS": {"Type": "layers", "Layers": img.diff_ids},
        "Metadata": {"LastTagTime": ""},
        "Descriptor": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": img.manifest_digest},
    }


def history_rows(img: Image, sizes: list[int], now: _dt.datetime | None = None) -> list[dict[str, Any]]:
    """Rows of ``image history``, newest first. ``sizes`` are the sizes of the image's layers,
    bottom -> top; history entries with ``empty_layer`` take none."""
    history = list(img.config.get("history") or [])
    rows = []
    layer_i = 0
    for h in history:
        empty = bool(h.get("empty_layer"))
        size = 0
        if not empty and layer_i < len(sizes):
            size = sizes[layer_i]
            layer_i += 1
        rows.append({
            "ID": "<missing>", "Created": h.get("created", ""), "CreatedSince": ago(h.get("created", ""), now),
            "CreatedBy": h.get("created_by", ""), "Size": size, "Comment": h.get("comment", ""),
        })
    if rows:
        rows[-1]["ID"] = short_id(img.id)
    return list(reversed(rows))
