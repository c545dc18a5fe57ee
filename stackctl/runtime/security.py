"""``--security-opt`` values and the sysctl rules that depend on the network mode.

Pure (but for :func:`apparmor_available`, which looks at the host): :func:`parse_security_opts`
turns the strings users pass (``docker run --security-opt``, a stack file's ``security_opt``)
into :class:`SecurityOptions`, or a UsageError naming the value; the container's spec keeps the
result. Forms, as Docker takes them (``=`` or the older ``:``):

- ``seccomp=unconfined`` (no filter), ``seccomp=PROFILE.json`` (a profile in Docker's format;
  the file is read when the container is created);
- ``no-new-privileges``, ``no-new-privileges=true|false`` (stackctl's default is true);
- ``apparmor=PROFILE`` (the profile must be loaded on the host; refused where the host has no
  AppArmor), ``apparmor=unconfined``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from stackctl.errors import UsageError

APPARMOR_DIR = "/sys/kernel/security/apparmor"
_TRUE = ("true", "1", "yes", "")
_FALSE = ("false", "0", "no")


@dataclass
class SecurityOptions:
    seccomp: str = "default"  # "default" | "unconfined" | "custom"
    seccomp_path: str = ""  # the profile file, for "custom"
    no_new_privileges: bool = True
    apparmor: str = ""


def apparmor_available(root: str = APPARMOR_DIR) -> bool:
    return os.path.isdir(root)


def parse_security_opts(values: list[str], *, apparmor: bool | None = None) -> SecurityOptions:
    """``values`` as :class:`SecurityOptions`. ``apparmor``: whether the host has AppArmor
    (looked up when None)."""
    out = SecurityOptions()
    for raw in values:
        key, sep, value = raw.partition("=")
        if not sep:
            key, sep, value = raw.partition(":")
        key = key.strip().lower()
        if key == "seccomp":
            if not value:
                raise UsageError(f"invalid --security-opt {raw!r}: seccomp needs a profile file "
                                 "or unconfined")
            if value == "unconfined":
                out.seccomp, out.seccomp_path = "unconfined", ""
            elif value == "builtin":
                out.seccomp, out.seccomp_path = "default", ""
            else:
                out.seccomp, out.seccomp_path = "custom", value
        elif key == "no-new-privileges":
            v = value.strip().lower()
            if v in _TRUE:
                out.no_new_privileges = True
            elif v in _FALSE:
                out.no_new_privileges = False
            else:
                raise UsageError(f"invalid --security-opt {raw!r}: no-new-privileges takes "
                                 "true or false")
        elif key == "apparmor":
            if not value:
                raise UsageError(f"invalid --security-opt {raw!r}: apparmor needs a profile name")
            has = apparmor_available() if apparmor is None else apparmor
            if value != "unconfined" and not has:
                raise UsageError(f"--security-opt {raw}: this host has no AppArmor "
                                 f"({APPARMOR_DIR} is missing), so the profile cannot be applied",
                                 hint="drop the option, or run on a host with AppArmor enabled")
            out.apparmor = value
        elif key in ("label", "systempaths", "writable-cgroups", "mask", "unmask", "proc-opts"):
            raise UsageError(f"--security-opt {raw}: {key} is not supported by stackctl",
                             hint="supported: seccomp=..., no-new-privileges, apparmor=...")
        else:
            raise UsageError(f"invalid --security-opt {raw!r}",
                             hint="seccomp=PROFILE.json|unconfined, no-new-privileges[=true|false], "
                                  "apparmor=PROFILE")
    return out


def check_sysctl_network(name: str, network: str) -> str | None:
    """Why ``name`` cannot be set for a container on ``network`` (None: it can). ``net.*``
    sysctls belong to a network namespace: a container without its own would change the
    host's (``host``) or another container's (``container:``) values. Refused as runc does."""
    if not name.startswith("net."):
        return None
    if network == "host":
        return f'sysctl "{name}" not allowed in host network namespace'
    if network.startswith(("container:", "service:")):
        return (f'sysctl "{name}" not allowed in a network namespace shared with another '
                f"container ({network})")
    return None
