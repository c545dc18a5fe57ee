"""Instructions that only change the image config (pure): ENV, LABEL, CMD, ENTRYPOINT, EXPOSE,
VOLUME, WORKDIR, USER, STOPSIGNAL, HEALTHCHECK, SHELL, ONBUILD, MAINTAINER.

Used by the builder and by ``image import --change``. ``cfg`` is the ``config`` object of an
OCI image config (Docker's field names: Env, Cmd, Entrypoint, WorkingDir, ...).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any, Mapping

from stackctl.errors import StackctlError
from stackctl.runtime.images.build.dockerfile import Instruction, key_values, parse
from stackctl.runtime.images.build.words import expand, expand_fields

DEFAULT_SHELL = ["/bin/sh", "-c"]
CHANGE_ALLOWED = {"CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL", "USER",
                  "VOLUME", "WORKDIR"}
METADATA = CHANGE_ALLOWED | {"HEALTHCHECK", "SHELL", "MAINTAINER"}

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


def env_map(cfg: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in cfg.get("Env") or []:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def set_env(cfg: dict[str, Any], key: str, value: str) -> None:
    env = list(cfg.get("Env") or [])
    for i, item in enumerate(env):
        if item.partition("=")[0] == key:
            env[i] = f"{key}={value}"
            break
    else:
        env.append(f"{key}={value}")
    cfg["Env"] = env


def command_of(ins: Instruction, cfg: Mapping[str, Any]) -> list[str]:
    """Exec form as given; shell form wrapped in the SHELL (default ``/bin/sh -c``)."""
    if ins.exec_form is not None:
        return list(ins.exec_form)
    return list(cfg.get("Shell") or DEFAULT_SHELL) + [ins.rest]


def parse_duration(text: str, what: str) -> int:
    """Go duration ("30s", "1m30s", "500ms") -> nanoseconds."""
    pos, total = 0, 0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += int(float(m.group(1)) * _UNIT_NS[m.group(2)])
        pos = m.end()
    if pos != len(text) or not text:
        raise StackctlError(f"HEALTHCHECK --{what}: invalid duration {text!r}", hint="use e.g. 30s, 1m30s, 500ms")
    return total


def apply(cfg: dict[str, Any], ins: Instruction, env: Mapping[str, str], escape: str = "\\") -> dict[str, Any]:
    """Apply one metadata instruction to ``cfg`` in place; ``env`` is what $VARs expand to.

    Returns top-level image-config fields to set (only MAINTAINER sets ``author``).
    """
    cmd = ins.cmd

    def x(word: str) -> str:
        return expand(word, env, escape)

    if cmd == "ENV":
        scope = dict(env)
        for k, raw in key_values(ins):
            value = expand(raw, scope, escape)
            set_env(cfg, k, value)
            scope[k] = value  # later pairs on the same line see earlier ones
    elif cmd == "LABEL":
        labels = dict(cfg.get("Labels") or {})
        for k, raw in key_values(ins):
            labels[x(k)] = x(raw)
        cfg["Labels"] = labels
    elif cmd == "CMD":
        cfg["Cmd"] = command_of(ins, cfg)
    elif cmd == "ENTRYPOINT":
        cfg["Entrypoint"] = command_of(ins, cfg)
    elif cmd == "EXPOSE":
        ports = dict(cfg.get("ExposedPorts") or {})
        for word in expand_fields(ins.rest, env, escape):
            for p in _expand_ports(word):
                ports[p] = {}
        cfg["ExposedPorts"] = ports
    elif cmd == "VOLUME":
        vols = dict(cfg.get("Volumes") or {})
        items = ins.exec_form if ins.exec_form is not None else expand_fields(ins.rest, env, escape)
        for v in items:
            v = x(v) if ins.exec_form is not None else v
            if not v.strip():
                raise StackctlError(f"VOLUME (line {ins.line}): volume paths cannot be empty")
            vols[v] = {}
        cfg["Volumes"] = vols
    elif cmd == "WORKDIR":
        path = x(ins.rest)
        base = cfg.get("WorkingDir") or "/"
        cfg["WorkingDir"] = posixpath.normpath(posixpath.join(base, path))
    elif cmd == "USER":
        cfg["User"] = x(ins.rest)
    elif cmd == "STOPSIGNAL":
        cfg["StopSignal"] = x(ins.rest)
    elif cmd == "SHELL":
        cfg["Shell"] = list(ins.exec_form or [])
    elif cmd == "ONBUILD":
        cfg["OnBuild"] = list(cfg.get("OnBuild") or []) + [ins.rest]
    elif cmd == "HEALTHCHECK":
        cfg["Healthcheck"] = _healthcheck(ins, cfg)
    elif cmd == "MAINTAINER":
        return {"author": x(ins.rest)}
    else:  # pragma: no cover - the builder only sends metadata instructions
        raise ValueError(cmd)
    return {}


def _expand_ports(word: str) -> list[str]:
    port, _, proto = word.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise StackctlError(f"EXPOSE: invalid protocol {proto!r} in {word!r}", hint="use tcp, udp or sctp")
    lo, _, hi = port.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise StackctlError(f"EXPOSE: invalid port {word!r}", hint="use e.g. 80, 80/udp or 8000-8010")
    start, end = int(lo), int(hi or lo)
    if not (0 < start <= end <= 65535):
        raise StackctlError(f"EXPOSE: port out of range in {word!r}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def _healthcheck(ins: Instruction, cfg: Mapping[str, Any]) -> dict[str, Any]:
    head, _, rest = ins.rest.partition(" ")
    if head.upper() == "NONE":
        return {"Test": ["NONE"]}
    rest = rest.strip()
    inner = Instruction(cmd="CMD", rest=rest, line=ins.line)
    if rest.startswith("["):
        import json

        try:
            value = json.loads(rest)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                inner = Instruction(cmd="CMD", rest=rest, exec_form=value, line=ins.line)
        except ValueError:
            pass
    test = ["CMD"] + inner.exec_form if inner.exec_form is not None else ["CMD-SHELL", rest]
    hc: dict[str, Any] = {"Test": test}
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if flag in ins.flags:
            hc[key] = parse_duration(ins.flag(flag), flag)
    if "retries" in ins.flags:
        value = ins.flag("retries")
        if not value.isdigit():
            raise StackctlError(f"HEALTHCHECK --retries: invalid number {value!r}")
        hc["Retries"] = int(value)
    return hc


def apply_changes(cfg: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """``image import --change 'CMD ["sh"]'``: apply Dockerfile metadata lines to ``cfg``."""
    for text in changes:
        ins = parse(text, filename="--change").instructions[0]
        if ins.cmd not in CHANGE_ALLOWED:
            raise StackctlError(f"--change {text!r}: {ins.cmd} is not allowed here",
                                hint="allowed: " + ", ".join(sorted(CHANGE_ALLOWED)))
        apply(cfg, ins, env_map(cfg))
    return cfg
