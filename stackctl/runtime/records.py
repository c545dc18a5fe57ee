"""A container as the manager stores it (:class:`Record`: spec, extras, monitor state) and
the pure views of records that ``ps``, ``inspect`` and ``top`` print: Docker's filters, its
inspect document, and ``ps -ef`` output cut down to a container's processes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from stackctl.errors import UsageError
from stackctl.runtime.spec import ContainerSpec, ContainerState

ZERO_TIME = "0001-01-01T00:00:00Z"
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


@dataclass
class Record:
    """One container as stored: its spec, the manager's extras, and the monitor's state."""

    spec: ContainerSpec
    meta: dict[str, Any]
    state: ContainerState

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name


# --- filters (pure) -----------------------------------------------------------------------

def parse_filters(values: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise UsageError(f"bad format of filter {v!r}: expected name=value")
        out.setdefault(k.strip().lower(), []).append(val)
    return out


def shown_status(state: Any) -> str:
    """Docker's status word: ``paused`` for a running container whose cgroup is frozen."""
    return "paused" if state.status == "running" and getattr(state, "paused", False) else state.status


def record_matches(rec: Record, filters: dict[str, list[str]], image_ids: dict[str, str] | None = None) -> bool:
    """``ps --filter``: status, name, label, id, ancestor, exited, volume. Values of one key
    are alternatives (OR); different keys must all match (AND), as in Docker."""
    for key, values in filters.items():
        if key == "status":
            for v in values:
                if v not in STATUSES:
                    raise UsageError(f"invalid filter 'status={v}': one of {', '.join(STATUSES)}")
            if shown_status(rec.state) not in values:
                return False
        elif key == "name":
            if not any(re.search(v, rec.name) for v in values):
                return False
        elif key == "id":
            if not any(rec.id.startswith(v) for v in values):
                return False
        elif key == "label":
            for v in values:  # every label filter must hold
                k, sep, val = v.partition("=")
                if k not in rec.spec.labels or (sep and rec.spec.labels[k] != val):
                    return False
        elif key == "ancestor":
            ok = False
            for v in values:
                if v in (rec.spec.image, rec.spec.image_id) or (":" not in v and rec.spec.image == v + ":latest"):
                    ok = True
                elif (image_ids or {}).get(v) == rec.spec.image_id:
                    ok = True
                elif rec.spec.image_id.removeprefix("sha256:").startswith(v.removeprefix("sha256:")) and len(v) >= 4:
                    ok = True
            if not ok:
                return False
        elif key == "exited":
            if rec.state.status != "exited" or str(rec.state.exit_code) not in values:
                return False
        elif key == "volume":
            if not any(m.volume_name == v or m.target == v for v in values for m in rec.spec.mounts):
                return False
        else:
            raise UsageError(f"invalid filter {key!r} (status, name, label, id, ancestor, exited, volume)")
    return True


def parse_ps_table(output: str, pids: set[int]) -> tuple[list[str], list[list[str]]]:
    """``ps -ef`` output cut down to the given host PIDs: (headers, rows). The last column
    (CMD) keeps its spaces."""
    lines = output.splitlines()
    if not lines:
        return [], []
    headers = lines[0].split()
    pid_col = headers.index("PID")
    rows = []
    for line in lines[1:]:
        cells = line.split(None, len(headers) - 1)
        if len(cells) < len(headers):
            continue
        try:
            if int(cells[pid_col]) in pids:
                rows.append(cells)
        except ValueError:
            continue
    return headers, rows


# --- inspect (pure) ----------------------------------------------------------------------

def inspect_record(rec: Record, log_path: Any = None) -> dict[str, Any]:
    spec, st = rec.spec, rec.state
    cfg = dict(rec.meta.get("Config") or {})
    cfg.setdefault("Hostname", spec.hostname)
    cfg.setdefault("Image", spec.image)
    cfg.setdefault("Env", spec.env)
    cfg.setdefault("Cmd", spec.argv)
    cfg.setdefault("Entrypoint", None)
    cfg.setdefault("WorkingDir", spec.cwd)
    cfg.setdefault("User", spec.user)
    cfg.setdefault("Labels", spec.labels)
    r = spec.resources
    status = shown_status(st)
    return {
        "Id": spec.id,
        "Created": spec.created,
        "Path": spec.argv[0] if spec.argv else "",
        "Args": spec.argv[1:],
        "State": {
            "Status": status,
            "Running": st.status == "running",
            "Paused": status == "paused",
            "Restarting": False,
            "OOMKilled": st.oom_killed,
            "Dead": status == "dead",
            "Pid": st.pid if st.status == "running" else 0,
            "ExitCode": st.exit_code if st.exit_code is not None else 0,
            "Error": st.error,
            "StartedAt": st.started_at or ZERO_TIME,
            "FinishedAt": st.finished_at or ZERO_TIME,
        },
        "Image": spec.image_id,
        "LogPath": log_path(spec.id) if log_path else "",
        "Name": "/" + spec.name,
        "Driver": "overlay",
        "Platform": "linux",
        "HostConfig": {
            "Binds": [f"{m.source if m.type == 'bind' else m.volume_name}:{m.target}{':ro' if m.read_only else ''}"
                      for m in spec.mounts if m.type in ("bind", "volume") and not _anonymous(rec, m.volume_name)] or None,
            "NetworkMode": spec.network,
            "AutoRemove": spec.auto_remove,
            "CapAdd": spec.cap_add or None,
            "CapDrop": spec.cap_drop or None,
            "Dns": spec.dns,
            "DnsOptions": spec.dns_options,
            "DnsSearch": spec.dns_search,
            "ExtraHosts": spec.extra_hosts or None,
            "Privileged": spec.privileged,
            "SecurityOpt": list(spec.security_opt) or None,
            "ReadonlyRootfs": spec.read_only,
            "ShmSize": r.shm_size,
            "Init": spec.init,
            "Memory": r.memory or 0,
            "MemoryReservation": r.memory_reservation or 0,
            "NanoCpus": int(round((r.cpus or 0) * 1e9)),
            "PidsLimit": r.pids,
            "MemorySwap": getattr(r, "memory_swap", None) or 0,
            "RestartPolicy": dict(rec.meta.get("RestartPolicy") or {"Name": "no", "MaximumRetryCount": 0}),
            "Ulimits": [{"Name": k, "Soft": s, "Hard": h} for k, (s, h) in spec.ulimits.items()] or None,
            "Sysctls": spec.sysctls or None,
            "Tmpfs": {m.target: ",".join(m.options) for m in spec.mounts if m.type == "tmpfs"} or None,
        },
        "Mounts": [_inspect_mount(m) for m in spec.mounts],
        "Config": cfg,
        "NetworkSettings": _network_settings(rec),
    }


def _network_settings(rec: Record) -> dict[str, Any]:
    """Docker's NetworkSettings: recorded at create for a container on our networks (its
    address and ports stay until ``rm``); ports only show while it runs, as in Docker."""
    settings = dict(rec.meta.get("NetworkSettings") or {})
    networks = settings.get("Networks") or {}
    if not networks and rec.spec.network in ("none", "host"):
        networks = {rec.spec.network: {"NetworkID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                                       "MacAddress": "", "Aliases": None}}
    ports = settings.get("Ports") or {}
    return {"Networks": networks, "Ports": ports if rec.state.status == "running" else {},
            "SandboxKey": rec.spec.network.removeprefix("netns:") if rec.spec.network.startswith("netns:") else ""}


def _anonymous(rec: Record, volume_name: str) -> bool:
    return bool(volume_name) and volume_name in rec.meta.get("AnonymousVolumes", [])


def _inspect_mount(m: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"Type": m.type}
    if m.type == "volume":
        out.update(Name=m.volume_name, Source=m.source, Destination=m.target, Driver="local")
    else:
        out.update(Source=m.source, Destination=m.target)
    out.update(Mode="ro" if m.read_only else "", RW=not m.read_only,
               Propagation="rprivate" if m.type == "bind" else "")
    return out
