"""A service (``services.<name>``), normalized to Compose's long syntax.

Cross-key rules applied here, as Compose and Swarm apply them:

- ``scale`` sets ``deploy.replicas`` (both set and different is an error);
- ``restart`` gives ``deploy.restart_policy`` when that is not written (no -> none,
  always/unless-stopped -> any, on-failure[:N] -> on-failure with max_attempts N);
- ``cpus``, ``mem_limit``, ``mem_reservation`` and ``pids_limit`` fill
  ``deploy.resources`` (conflicting values are an error);
- port ranges are expanded to one entry per container port.
"""

import re
from typing import Annotated, Any, ClassVar

from stackctl.spec.models.core import BeforeValidator, Field, PlainValidator, field_serializer, field_validator

from stackctl.spec import units
from stackctl.spec.models.base import (
    Bool,
    ByteSize,
    Duration,
    Model,
    NanoCpus,
    NonNegInt,
    Str,
    StrList,
    StrMap,
    StrOrList,
    describe,
    fail,
    key_value_map,
)
from stackctl.spec.models.deploy import Deploy, RestartPolicy
from stackctl.spec.models.mounts import Mount, mount_item
from stackctl.spec.models.network import ServiceNetwork, service_networks
from stackctl.spec.models.ports import Port, expose_item, port_item
from stackctl.spec.models.service_parts import (
    Build,
    Dependency,
    EnvFile,
    FileRef,
    Healthcheck,
    Logging,
    Ulimit,
    build_item,
    command_list,
    depends_on_map,
    env_file_list,
    file_ref_item,
    ulimits_map,
)

PULL_POLICIES = ("always", "never", "missing", "build", "refresh", "daily", "weekly")
# Compose's schema: every_ followed by one or more <number><unit>, units w d h m s
_EVERY = re.compile(r"^every_(?:[0-9]+[wdhms])+$")
_RESTART = re.compile(r"^(no|always|unless-stopped|on-failure(?::(\d+))?)$")
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def _restart(value: Any) -> str:
    if isinstance(value, bool) and value is False:
        return "no"  # `restart: no` read as a YAML 1.1 boolean somewhere upstream
    if isinstance(value, str) and _RESTART.match(value):
        return value
    raise fail("expected one of: no, always, on-failure, on-failure:<max retries>, "
               f"unless-stopped; got {describe(value)}")


def _pull_policy(value: Any) -> str:
    if value == "if_not_present":
        return "missing"
    if isinstance(value, str):
        if value in PULL_POLICIES or _EVERY.match(value):
            return value
    raise fail(f"expected one of: {', '.join(PULL_POLICIES)}, if_not_present, "
               f"every_<duration> (such as every_12h or every_2d); got {describe(value)}")


def _host_ips(host: str, text: str, where: str) -> list[str]:
    """``1.2.3.4,5.6.7.8`` -> two addresses; ``[::1]`` -> ``::1`` (as compose-go reads them)."""
    ips = [ip.strip() for ip in text.split(",")]
    if not host or not all(ips):
        raise fail(f"{where}: expected HOST=IP (or HOST:IP), got {describe(f'{host}={text}')}")
    return [ip[1:-1] if ip.startswith("[") and ip.endswith("]") else ip for ip in ips]


def _extra_hosts(value: Any) -> dict[str, list[str]]:
    """``extra_hosts`` as compose-go reads it: a list of ``HOST=IP`` or ``HOST:IP`` (split at
    the first ``=``, else the first ``:``; several addresses separated by commas), or a
    mapping of host to an address or a list of addresses."""
    if value is None:
        return {}
    out: dict[str, list[str]] = {}
    if isinstance(value, dict):
        for host, ips in value.items():
            items = ips if isinstance(ips, list) else [ips]
            for ip in items:
                if not isinstance(ip, str) or not ip:
                    raise fail(f"{host}: expected an IP address, got {describe(ip)}")
                out.setdefault(str(host), []).extend(_host_ips(str(host), ip, str(host)))
        return out
    if isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise fail(f"item {i + 1}: expected HOST=IP, got {describe(item)}")
            sep = "=" if "=" in item else ":"
            host, found, ip = item.partition(sep)
            if not found:
                raise fail(f"item {i + 1}: expected HOST=IP or HOST:IP, got {describe(item)}")
            out.setdefault(host, []).extend(_host_ips(host, ip, f"item {i + 1}"))
        return out
    raise fail(f"expected a list of HOST=IP or a mapping, got {describe(value)}")


def _environment(value: Any) -> dict[str, str | None]:
    return key_value_map(value, allow_missing=True)


def _items(item_parser):
    """Items of a list parsed one by one (errors stay at their index)."""
    def check(value: Any) -> Any:
        if value is None:
            return []
        if not isinstance(value, list):
            raise fail(f"expected a list, got {describe(value)}")
        return value
    return check


def _none_as(empty: Any):
    def check(value: Any) -> Any:
        return empty() if value is None else value
    return check


#: service keys that fold into deploy.resources: key -> (limits|reservations, field)
RESOURCE_SHORTHANDS = {
    "cpus": ("limits", "cpus"),
    "mem_limit": ("limits", "memory"),
    "mem_reservation": ("reservations", "memory"),
    "pids_limit": ("limits", "pids"),
}


class Service(Model):
    area: ClassVar[str] = "service"
    extensible: ClassVar[bool] = True
    keep_empty: ClassVar[frozenset[str]] = frozenset({"command", "entrypoint"})
    omit_false: ClassVar[frozenset[str]] = frozenset(
        {"init", "read_only", "privileged", "stdin_open", "tty"})

    image: Str | None = None
    build: Annotated[Build | None, BeforeValidator(build_item)] = None
    command: Annotated[list[str] | None, PlainValidator(command_list)] = None
    entrypoint: Annotated[list[str] | None, PlainValidator(command_list)] = None
    container_name: Str | None = None
    hostname: Str | None = None
    domainname: Str | None = None
    user: Str | None = None
    working_dir: Str | None = None

    environment: Annotated[dict[str, str | None], PlainValidator(_environment)] = \
        Field(default_factory=dict)
    env_file: Annotated[list[EnvFile], BeforeValidator(env_file_list)] = \
        Field(default_factory=list)
    labels: StrMap = Field(default_factory=dict)
    # read into labels by stackctl.spec.validate (labels win); not printed again
    label_file: StrOrList = Field(default_factory=list, exclude=True)

    ports: Annotated[list[Annotated[Port, BeforeValidator(port_item)]],
                     BeforeValidator(_items(port_item))] = Field(default_factory=list)
    expose: Annotated[list[Annotated[str, PlainValidator(expose_item)]],
                      BeforeValidator(_items(expose_item))] = Field(default_factory=list)
    networks: Annotated[dict[str, ServiceNetwork], BeforeValidator(service_networks)] = \
        Field(default_factory=dict)
    network_mode: Str | None = None
    extra_hosts: Annotated[dict[str, list[str]], PlainValidator(_extra_hosts)] = \
        Field(default_factory=dict)
    dns: StrOrList = Field(default_factory=list)
    dns_search: StrOrList = Field(default_factory=list)

    volumes: Annotated[list[Annotated[Mount, BeforeValidator(mount_item)]],
                       BeforeValidator(_items(mount_item))] = Field(default_factory=list)
    volumes_from: StrList = Field(default_factory=list)
    tmpfs: StrOrList = Field(default_factory=list)
    secrets: Annotated[list[Annotated[FileRef, BeforeValidator(file_ref_item)]],
                       BeforeValidator(_items(file_ref_item))] = Field(default_factory=list)
    configs: Annotated[list[Annotated[FileRef, BeforeValidator(file_ref_item)]],
                       BeforeValidator(_items(file_ref_item))] = Field(default_factory=list)

    depends_on: Annotated[dict[str, Dependency], BeforeValidator(depends_on_map)] = \
        Field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    restart: Annotated[str | None, PlainValidator(_restart)] = None
    deploy: Annotated[Deploy, BeforeValidator(_none_as(dict))] = Field(default_factory=Deploy)
    scale: NonNegInt | None = None
    profiles: StrList = Field(default_factory=list)
    pull_policy: Annotated[str, PlainValidator(_pull_policy)] = "missing"

    stop_signal: Str | None = None
    stop_grace_period: Duration = 10 * units.SECOND
    init: Bool = False
    read_only: Bool = False
    privileged: Bool = False
    stdin_open: Bool = False
    tty: Bool = False
    cap_add: StrList = Field(default_factory=list)
    cap_drop: StrList = Field(default_factory=list)
    sysctls: StrMap = Field(default_factory=dict)
    security_opt: StrList = Field(default_factory=list)
    ulimits: Annotated[dict[str, Ulimit], BeforeValidator(ulimits_map)] = \
        Field(default_factory=dict)
    shm_size: ByteSize | None = None
    ipc: Str | None = None
    pid: Str | None = None
    logging: Logging | None = None

    # shorthands folded into deploy.resources (never printed: deploy shows them)
    cpus: NanoCpus | None = Field(default=None, exclude=True)
    mem_limit: ByteSize | None = Field(default=None, exclude=True)
    mem_reservation: ByteSize | None = Field(default=None, exclude=True)
    pids_limit: NonNegInt | None = Field(default=None, exclude=True)
    # already resolved by the loader (stackctl.spec.extends); accepted and not printed
    extends: Any = Field(default=None, exclude=True)

    @field_validator("profiles", mode="after")
    @classmethod
    def _profiles(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _NAME.match(name):
                raise fail(f"invalid profile name {describe(name)}: use letters, digits, "
                           "'_', '.' and '-', starting with a letter or digit")
        return value

    @field_serializer("extra_hosts")
    def _hosts_out(self, value: dict[str, list[str]]) -> list[str]:
        return [f"{host}={ip}" for host, ips in value.items() for ip in ips]

    def finish(self, data: dict[str, Any]) -> None:
        if self.image is None and self.build is None and "provider" not in self._unsupported:
            raise fail("a service needs an image, a build section or a provider")
        raw_deploy = data.get("deploy") if isinstance(data.get("deploy"), dict) else {}
        self._fold_scale(raw_deploy)
        self._fold_restart(raw_deploy)
        self._fold_resources()
        if self.network_mode is not None and data.get("networks"):
            raise fail("network_mode and networks cannot be used together", at="networks")
        self._check_security()
        replicas = self.deploy.replicas or 0
        if self.container_name and (replicas > 1 or self.deploy.is_global):
            raise fail(f"container_name {self.container_name} cannot be used by several "
                       "replicas; remove it or run one replica", at="container_name")
        self.ports = [p for port in self.ports for p in port.expand()]

    def _check_security(self) -> None:
        """net.* sysctls need the service's own network namespace (as runc refuses them);
        security_opt values must be ones stackctl carries out."""
        if not self.sysctls and not self.security_opt:
            return  # (the runtime's module is not imported for nothing: config -q's speed)
        from stackctl.errors import UsageError
        from stackctl.runtime.security import check_sysctl_network, parse_security_opts

        for key in self.sysctls:
            why = check_sysctl_network(key, self.network_mode or "")
            if why:
                raise fail(f"{why} (network_mode: {self.network_mode})", at="sysctls")
        try:
            parse_security_opts(list(self.security_opt), apparmor=True)
        except UsageError as exc:
            raise fail(exc.message, at="security_opt") from None

    def _fold_scale(self, raw_deploy: dict[str, Any]) -> None:
        if self.scale is None:
            return
        if raw_deploy.get("replicas") is not None and self.deploy.replicas != self.scale:
            raise fail(f"scale ({self.scale}) and deploy.replicas ({self.deploy.replicas}) "
                       "differ; set only one", at="scale")
        if self.deploy.is_global:
            raise fail(f"scale cannot be set with deploy.mode {self.deploy.mode}", at="scale")
        self.deploy.replicas = self.scale
        self.scale = None

    def _fold_restart(self, raw_deploy: dict[str, Any]) -> None:
        if self.restart is None or raw_deploy.get("restart_policy") is not None:
            return
        if self.restart == "no":
            policy = RestartPolicy(condition="none")
        elif self.restart.startswith("on-failure"):
            _, _, count = self.restart.partition(":")
            policy = RestartPolicy(condition="on-failure", max_attempts=int(count or 0))
        else:
            policy = RestartPolicy(condition="any")
        self.deploy.restart_policy = policy

    def _fold_resources(self) -> None:
        for key, (group, field) in RESOURCE_SHORTHANDS.items():
            value = getattr(self, key)
            if value is None:
                continue
            spec = getattr(self.deploy.resources, group)
            current = getattr(spec, field)
            if current is not None and current != value:
                raise fail(f"{key} and deploy.resources.{group}.{field} differ; set only one",
                           at=key)
            setattr(spec, field, value)
            setattr(self, key, None)

    @staticmethod
    def valid_name(name: str) -> bool:
        return bool(_NAME.match(name))
