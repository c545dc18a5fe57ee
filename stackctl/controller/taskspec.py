"""A service's task as a container request: what :meth:`NodeOps.create_container` takes.

Pure: a normalized :class:`~stackctl.spec.models.Service`, its :class:`Task`, the stack, and a
few facts the caller looked up (the image's config for the HEALTHCHECK fallback, the directory
holding this version's secret/config files, the container a ``network_mode: service:x``
joins) in; a :class:`TaskRequest` out. Nothing here reads a file or asks a node.

How the keys map (Compose's meaning; the runtime's ``run`` flags underneath):

=========================  ===================================================================
``image``                  the reference; ``build`` without ``image``: ``<stack>-<service>``
``command``/``entrypoint`` as lists (``entrypoint: []`` clears the image's)
``environment``            ``K=V``; a ``null`` value (unset in the file and the environment)
                           is left out, so the image's value (if any) stays
``labels``                 the service's labels, then the task labels (stack, service, slot,
                           config hash, task id) which always win
``volumes``                named: ``<stack>_<vol>`` (or the ``name:`` / external name);
                           anonymous; bind (short syntax creates a missing host path, as
                           Compose); tmpfs (size, mode)
``secrets``/``configs``    read-only bind mounts of files the controller writes
                           (:mod:`.objects`): secrets at ``/run/secrets/<target>``, configs
                           at their target
``networks``               :class:`Attachment` (``<stack>_<net>``, aliases ``[service,
                           *aliases]``, ``ipv4_address``); ``network_mode`` none / host /
                           ``service:x`` (the namespace of x's container) /
                           ``container:NAME`` (a container outside the stack, resolved by
                           the node when it creates the task)
``ports``                  ``mode: host`` and ports without a host port: per container;
                           ``mode: ingress`` with a host port: a *service port*, balanced over
                           the service's healthy replicas (:mod:`stackctl.net.service_ports`)
``ports`` (readiness)      without a health check, the TCP ``target`` ports of the ports it
                           publishes: label ``com.stackctl.listen-ports`` (the replica is
                           ready once they listen; UDP is not checked)
``healthcheck``            the agent API's form: Compose's keys (``test``, ``interval`` in
                           seconds, ...); a missing ``test`` takes the image's; ``disable``
                           gives ``{"test": ["NONE"]}``
=========================  ===================================================================
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackctl.errors import StackctlError
from stackctl.net.sandbox import Attachment
from stackctl.runtime.imageconfig import RunOptions
from stackctl.scheduler.observed import format_listen_ports
from stackctl.scheduler.tasks import LABEL_LISTEN_PORTS, HealthTiming, Task
from stackctl.spec import units
from stackctl.spec.models import Healthcheck, Mount, Port, Service, Stack
from stackctl.spec.models.service_parts import FileRef

SECRETS_DIR = "/run/secrets"
DEFAULT_SECRET_MODE = 0o400
DEFAULT_CONFIG_MODE = 0o444


@dataclass(frozen=True, slots=True)
class ObjectFile:
    """One secret or config file a task mounts: what to write where, and its owner/mode."""

    kind: str  # "secret" | "config"
    key: str  # the top-level key in the stack file
    filename: str  # file name inside the version's objects directory
    target: str  # absolute path in the container
    uid: int = 0
    gid: int = 0
    mode: int = DEFAULT_SECRET_MODE

    @property
    def ref(self) -> str:
        return f"{self.kind}:{self.key}"


@dataclass(frozen=True, slots=True)
class ServicePortSpec:
    """A published port of the service (ingress mode): host port -> healthy replicas."""

    host_ip: str
    published: str  # "8080" (a range "8000-8010" is refused for service ports)
    target: int
    protocol: str = "tcp"

    @property
    def text(self) -> str:
        ip = f"{self.host_ip}:" if self.host_ip else ""
        return f"{ip}{self.published}:{self.target}/{self.protocol}"


@dataclass
class TaskRequest:
    """Everything ``NodeOps.create_container`` takes for one task, plus what the controller
    does around it (object files to write before, service ports to publish)."""

    opts: RunOptions
    name: str
    networks: list[Attachment] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)  # per-container (-p syntax)
    service: str = ""
    endpoint_mode: str = "vip"
    health: dict[str, Any] | None = None
    files: list[ObjectFile] = field(default_factory=list)
    service_ports: list[ServicePortSpec] = field(default_factory=list)

    def create_kwargs(self) -> dict[str, Any]:
        """What ``create_container`` takes besides the options (the node interface's
        :class:`~stackctl.node.interface.ContainerRequest`, without the options)."""
        from stackctl.node.interface import ContainerRequest

        return ContainerRequest(self.opts, self.name, self.networks, self.ports, self.service,
                                self.endpoint_mode, self.health).kwargs()


def image_ref(stack_name: str, service_name: str, service: Service) -> str:
    """The image a service runs: ``image``, else ``<stack>-<service>`` (built)."""
    return service.image or f"{stack_name}-{service_name}"


def object_files(stack: Stack, service: Service) -> list[ObjectFile]:
    """The secret and config files ``service`` mounts (targets made absolute)."""
    out: list[ObjectFile] = []
    for kind, refs, default_mode in (("secret", service.secrets, DEFAULT_SECRET_MODE),
                                     ("config", service.configs, DEFAULT_CONFIG_MODE)):
        for i, ref in enumerate(refs):
            out.append(_object_file(kind, i, ref, default_mode))
    return out


def _object_file(kind: str, index: int, ref: FileRef, default_mode: int) -> ObjectFile:
    target = ref.target or ref.source
    if kind == "secret" and not target.startswith("/"):
        target = posixpath.join(SECRETS_DIR, target)
    elif not target.startswith("/"):
        target = "/" + target
    return ObjectFile(kind=kind, key=ref.source, filename=f"{kind}-{index}-{ref.source}",
                      target=posixpath.normpath(target),
                      uid=_int_id(ref.uid, kind, ref.source, "uid"),
                      gid=_int_id(ref.gid, kind, ref.source, "gid"),
                      mode=default_mode if ref.mode is None else ref.mode)


def _int_id(value: str | None, kind: str, key: str, what: str) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except ValueError:
        raise StackctlError(f"{kind} {key}: {what} {value!r} is not a number",
                            hint="give numeric uid/gid for secrets and configs") from None


def health_config(healthcheck: Healthcheck | None,
                  image_config: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The task's health check in the agent API's form (docs/agent-api.md): Compose's keys
    ``{test, interval, timeout, retries, start_period, start_interval}``, durations in
    seconds — what :meth:`stackctl.agent.health.HealthConfig.from_dict` reads. A service
    without ``test`` takes the image's ``HEALTHCHECK`` (Docker's object, nanoseconds);
    ``disable`` gives ``{"test": ["NONE"]}``; None: no health check at all."""
    image_hc = dict((image_config or {}).get("Healthcheck") or {})
    if healthcheck is not None and healthcheck.disable:
        return {"test": ["NONE"]}
    if healthcheck is None:
        if image_hc.get("Test") and image_hc["Test"] != ["NONE"]:
            out: dict[str, Any] = {"test": list(image_hc["Test"])}
            for key, docker_key, default in (
                    ("interval", "Interval", 30 * units.SECOND),
                    ("timeout", "Timeout", 30 * units.SECOND),
                    ("start_period", "StartPeriod", 0),
                    ("start_interval", "StartInterval", 5 * units.SECOND)):
                out[key] = (image_hc.get(docker_key) or default) / units.SECOND
            out["retries"] = image_hc.get("Retries") or 3
            return out
        return None
    test = healthcheck.test or image_hc.get("Test")
    if not test or test == ["NONE"]:
        return None if not test else {"test": ["NONE"]}
    return {"test": list(test), "interval": healthcheck.interval / units.SECOND,
            "timeout": healthcheck.timeout / units.SECOND, "retries": healthcheck.retries,
            "start_period": healthcheck.start_period / units.SECOND,
            "start_interval": healthcheck.start_interval / units.SECOND}


def health_timing(health: Mapping[str, Any] | None) -> HealthTiming | None:
    """What the rolling updater needs of a task's effective health check (its output is in
    nanoseconds, the scheduler's unit; ``health`` is :func:`health_config`'s form)."""
    if not health or health.get("test") in (None, ["NONE"]):
        return None
    return HealthTiming(round((health.get("interval") or 30) * units.SECOND),
                        int(health.get("retries") or 3),
                        round((health.get("start_period") or 0) * units.SECOND))


def _mount_flag(stack: Stack, m: Mount) -> tuple[str, str]:
    """(``volumes`` | ``mounts`` | ``tmpfs``, the flag value) for one service volume."""
    if m.type == "volume":
        parts = ["type=volume", f"target={m.target}"]
        if m.source:
            vol = stack.volumes.get(m.source)
            name = (vol.name if vol is not None and vol.name else m.source)
            parts.insert(1, f"source={name}")
        if m.read_only:
            parts.append("readonly")
        if m.volume is not None and m.volume.nocopy:
            parts.append("volume-nocopy=true")
        return "mounts", ",".join(parts)
    if m.type == "bind":
        create = m.bind is not None and m.bind.create_host_path
        propagation = m.bind.propagation if m.bind is not None else None
        if create and ":" not in m.source and "," not in m.source:
            opts = [o for o in ("ro" if m.read_only else "", propagation or "") if o]
            return "volumes", f"{m.source}:{m.target}" + (":" + ",".join(opts) if opts else "")
        parts = ["type=bind", f"source={m.source}", f"target={m.target}"]
        if m.read_only:
            parts.append("readonly")
        if propagation:
            parts.append(f"bind-propagation={propagation}")
        return "mounts", ",".join(parts)
    if m.type == "tmpfs":
        parts = ["type=tmpfs", f"target={m.target}"]
        if m.tmpfs is not None and m.tmpfs.size:
            parts.append(f"tmpfs-size={m.tmpfs.size}")
        if m.tmpfs is not None and m.tmpfs.mode is not None:
            parts.append(f"tmpfs-mode={m.tmpfs.mode:o}")
        if m.read_only:
            parts.append("readonly")
        return "mounts", ",".join(parts)
    raise StackctlError(f"volume type {m.type} on {m.target} is not supported by stackctl yet")


def split_ports(ports: list[Port]) -> tuple[list[str], list[ServicePortSpec]]:
    """(per-container ``-p`` specs, service ports)."""
    per_container: list[str] = []
    service: list[ServicePortSpec] = []
    for p in ports:
        if p.mode == "ingress" and p.published and "-" not in p.published:
            service.append(ServicePortSpec(p.host_ip or "", p.published, p.target, p.protocol))
            continue
        ip = f"{p.host_ip}:" if p.host_ip else ""
        host = f"{p.published}:" if p.published else (":" if ip else "")
        per_container.append(f"{ip}{host}{p.target}/{p.protocol}")
    return per_container, service


def listen_ports(ports: list[Port], health: Mapping[str, Any] | None) -> list[int]:
    """The ports a replica must listen on before it is ready: the TCP targets of what it
    publishes, when it has no health check (with one, health decides). UDP has no listening
    state worth trusting (a bound socket is all there is): not checked."""
    if health_timing(health) is not None:
        return []
    return sorted({p.target for p in ports if p.protocol == "tcp"})


def service_listen_ports(service: Service,
                         image_config: Mapping[str, Any] | None = None) -> list[int]:
    """:func:`listen_ports` of a service's tasks: only with a network namespace of their own
    (``network_mode`` unset), the only case where ports are published into it."""
    if service.network_mode:
        return []
    return listen_ports(service.ports, health_config(service.healthcheck, image_config))


def task_request(stack: Stack, service_name: str, task: Task, *, task_id: str,
                 objects_dir: str = "", image_config: Mapping[str, Any] | None = None,
                 network_container: str | None = None) -> TaskRequest:
    """The container request of ``task`` (see the module docstring).

    ``objects_dir``: where this version's secret/config files are (:mod:`.objects`);
    ``network_container``: the container id a ``network_mode: service:x`` task joins.
    """
    assert stack.name
    s = stack.services[service_name]
    res = s.deploy.resources
    opts = RunOptions(
        image=image_ref(stack.name, service_name, s),
        command=list(s.command) if s.command is not None else None,
        entrypoint=list(s.entrypoint) if s.entrypoint is not None else None,
        env=[f"{k}={v}" for k, v in s.environment.items() if v is not None],
        workdir=s.working_dir or "",
        user=s.user or "",
        hostname=s.hostname or "",
        domainname=s.domainname or "",
        labels={**s.labels, **task.labels(task_id)},
        stop_signal=s.stop_signal or "",
        stop_timeout=s.stop_grace_period / units.SECOND,
        tty=s.tty, stdin_open=s.stdin_open, init=s.init, read_only=s.read_only,
        privileged=s.privileged, cap_add=list(s.cap_add), cap_drop=list(s.cap_drop),
        tmpfs=list(s.tmpfs),
        memory=res.limits.memory,
        memory_reservation=res.reservations.memory,
        cpus=res.limits.cpus / units.SECOND if res.limits.cpus else None,
        pids_limit=res.limits.pids,
        shm_size=s.shm_size,
        add_hosts=[f"{host}:{ip}" for host, ips in s.extra_hosts.items() for ip in ips],
        dns=list(s.dns), dns_search=list(s.dns_search),
        ulimits=[f"{k}={u.soft}:{u.hard}" for k, u in s.ulimits.items()],
        sysctls=[f"{k}={v}" for k, v in s.sysctls.items()],
        security_opt=list(s.security_opt),
        expose=list(s.expose),
    )
    for m in s.volumes:
        where, flag = _mount_flag(stack, m)
        getattr(opts, where).append(flag)
    files = object_files(stack, s)
    if files and not objects_dir:
        raise StackctlError(f"service {service_name}: no directory for its secrets and configs")
    for f in files:
        opts.mounts.append(f"type=bind,source={posixpath.join(objects_dir, f.filename)},"
                           f"target={f.target},readonly")

    networks: list[Attachment] = []
    ports, service_ports = split_ports(s.ports)
    mode = s.network_mode or ""
    if mode in ("none", "host"):
        opts.network = mode
        if mode == "none" and (ports or service_ports):
            raise StackctlError(f"service {service_name}: ports cannot be published with "
                                "network_mode none")
        if mode == "host":  # the host's own ports: nothing to publish
            ports, service_ports = [], []
    elif mode.startswith("service:"):
        if not network_container:
            raise StackctlError(f"service {service_name}: network_mode {mode}: "
                                f"{mode[8:]} has no running container to join")
        opts.network = f"container:{network_container}"
        ports, service_ports = [], []
    elif mode.startswith("container:") and len(mode) > len("container:"):
        # a container outside the stack, by name or id: the node resolves it when it creates
        # the task, and refuses one that does not run ("start it first")
        opts.network = mode
        ports, service_ports = [], []
    elif mode:
        raise StackctlError(f"service {service_name}: network_mode {mode} is not supported")
    else:
        for key, sn in s.networks.items():
            net = stack.networks.get(key)
            name = net.name if net is not None and net.name else f"{stack.name}_{key}"
            aliases = list(dict.fromkeys([service_name, *sn.aliases]))
            networks.append(Attachment(name, aliases, sn.ipv4_address))
        if networks:
            opts.network = networks[0].network
    health = health_config(s.healthcheck, image_config)
    wait = service_listen_ports(s, image_config)
    if wait:
        opts.labels[LABEL_LISTEN_PORTS] = format_listen_ports(wait)
    return TaskRequest(
        opts=opts, name=task.container_name(s.container_name), networks=networks, ports=ports,
        service=service_name, endpoint_mode=s.deploy.endpoint_mode,
        health=health, files=files, service_ports=service_ports)
