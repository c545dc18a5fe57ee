"""From the merged, interpolated tree to a validated, normalized :class:`Stack` and its graph.

:func:`build_stack` is what the loader (:mod:`stackctl.spec.load`) calls. Steps:

1. validate the tree into the models (every error of the file at once, located);
2. collect warnings: keys accepted but not carried out (:mod:`.models.support`), values stackctl
   does not carry out (a logging driver, ``ipc: host``...), the obsolete ``version``;
3. check references: networks, volumes, secrets and configs a service uses must be declared;
4. normalize what needs the project: ``name``, resource names (``<project>_<key>``),
   ``env_file`` folded into ``environment``, variables named without a value taken from the
   environment, relative paths, secret/config targets, the implicit ``default`` network;
5. apply profiles and build the :class:`~stackctl.spec.graph.ServiceGraph`.

The input tree is never changed. Reading ``env_file`` files is the only I/O.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from stackctl.errors import Issue, SpecError
from stackctl.spec.graph import ServiceGraph, active_services
from stackctl.spec.issues import issue_at, issues_from_validation, sort_issues, written_key
from stackctl.spec.models import Network, Service, Stack
from stackctl.spec.models.base import Model
from stackctl.spec.models.deploy import parse_constraint
from stackctl.spec.models.core import BaseModel, ValidationFailed
from stackctl.spec.models.support import LOG_DRIVERS, NOT_SUPPORTED, SUPPORTED_VALUES
from stackctl.spec.yamlpos import PDict

DEFAULT_NETWORK = "default"


def build_stack(raw: PDict, *, project_name: str, project_dir: str,
                environ: Mapping[str, str], profiles: Collection[str],
                ) -> tuple[Stack, ServiceGraph, list[Issue]]:
    """Validate and normalize ``raw``; raise :class:`SpecError` with every problem found."""
    stack = validate_tree(raw)
    warnings = list(unsupported_warnings(stack, raw))
    errors = check_references(stack, raw)
    errors += normalize(stack, raw, project_name=project_name, project_dir=project_dir,
                        environ=environ)
    if errors:
        raise SpecError(sort_issues(errors))
    enabled = active_services(stack.services, profiles)
    graph, graph_warnings = ServiceGraph.build(stack.services, enabled=enabled, raw=raw)
    warnings += graph_warnings
    stack.services = {name: stack.services[name] for name in sorted(enabled)}
    for service in stack.services.values():
        # optional dependencies on services switched off are dropped (as Compose does)
        service.depends_on = {k: v for k, v in service.depends_on.items() if k in enabled}
    add_default_network(stack, project_name)
    return stack, graph, sort_issues(warnings)


def validate_tree(raw: Any) -> Stack:
    """The models of ``raw``, or a :class:`SpecError` listing every error, located."""
    try:
        return Stack.model_validate(raw)
    except ValidationFailed as exc:
        raise SpecError(issues_from_validation(raw, exc)) from None
    except RecursionError:
        raise SpecError(Issue("the file nests too deeply (or a YAML alias refers to itself)",
                              pos=getattr(raw, "pos", None))) from None


# --------------------------------------------------------------------------------------------
# Warnings


def walk_models(model: BaseModel, path: tuple = ()) -> Iterator[tuple[tuple, Model]]:
    """Every model below (and including) ``model`` with its key path."""
    if isinstance(model, Model):
        yield path, model
    for name in type(model).nested_fields():
        value = model.__dict__[name]
        key = name
        if isinstance(value, BaseModel):
            yield from walk_models(value, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from walk_models(item, path + (key, i))
        elif isinstance(value, dict):
            for k, item in value.items():
                if isinstance(item, BaseModel):
                    yield from walk_models(item, path + (key, k))


def unsupported_warnings(stack: Stack, raw: Any) -> Iterator[Issue]:
    """A warning per key or value that stackctl accepts but does not carry out."""
    if isinstance(raw, dict) and "version" in raw:
        yield issue_at(raw, ["version"], "the key is obsolete and ignored", key=True)
    for path, model in walk_models(stack):
        for key in model.unsupported:
            yield issue_at(raw, path + (key,), NOT_SUPPORTED, key=True)
    for name, service in stack.services.items():
        base = ("services", name)
        for key in ("ipc", "pid"):
            value = getattr(service, key)
            if value is not None and value not in SUPPORTED_VALUES[key]:
                yield issue_at(raw, base + (key,), f"{key}: {value} is {NOT_SUPPORTED}")
        if service.logging and service.logging.driver not in LOG_DRIVERS:
            yield issue_at(raw, base + ("logging", "driver"),
                           f"logging driver {service.logging.driver} is {NOT_SUPPORTED}; "
                           "stackctl keeps logs as json-file")
        mode = service.network_mode
        if mode is not None and mode not in ("none", "host") and not mode.startswith(("service:", "container:")):
            yield issue_at(raw, base + ("network_mode",),
                           f"network_mode {mode} is {NOT_SUPPORTED}")
        for i, mount in enumerate(service.volumes):
            if mount.type not in ("volume", "bind", "tmpfs"):
                yield issue_at(raw, base + ("volumes", i),
                               f"volume type {mount.type} is {NOT_SUPPORTED}")
        for i, ref in enumerate(service.volumes_from):
            if ref.startswith("container:"):
                yield issue_at(raw, base + ("volumes_from", i),
                               f"volumes_from a container is {NOT_SUPPORTED}")
    for problem in not_runnable(stack, raw):
        yield Issue(problem.message + "; `stackctl up` refuses it", problem.path, problem.pos)


def not_runnable(stack: Stack, raw: Any) -> Iterator[Issue]:
    """What ``config`` accepts (Compose does) but ``up`` cannot carry out: network and volume
    drivers stackctl does not implement, secrets and configs whose data comes from a driver,
    services run by a ``provider``."""
    for key, network in stack.networks.items():
        if not network.implemented:
            yield issue_at(raw, ("networks", key, "driver"),
                           f"network driver {network.driver} is not supported by stackctl "
                           "(bridge and overlay are)")
    for key, volume in stack.volumes.items():
        if not volume.implemented:
            yield issue_at(raw, ("volumes", key, "driver"),
                           f"volume driver {volume.driver} is not supported by stackctl "
                           "(local is)")
    for kind in ("secrets", "configs"):
        for key, obj in getattr(stack, kind).items():
            if not obj.implemented:
                driver = obj.unsupported.get("driver") or obj.unsupported.get("template_driver")
                yield issue_at(raw, (kind, key),
                               f"{kind[:-1]} {key} comes from the driver {driver}, which "
                               "stackctl does not support (use file, environment or content)")
    for name, service in stack.services.items():
        for i, text in enumerate(service.deploy.placement.constraints):
            try:
                parse_constraint(text)
            except ValueError as exc:
                yield issue_at(raw, ("services", name, "deploy", "placement", "constraints", i),
                               str(exc))
        provider = service.unsupported.get("provider")
        if provider is not None:
            kind = provider.get("type") if isinstance(provider, dict) else provider
            yield issue_at(raw, ("services", name, "provider"),
                           f"service {name} is run by the provider {kind}, which stackctl "
                           "does not support")


def refuse_not_runnable(stack: Stack, raw: Any) -> None:
    """For ``up``: raise :class:`SpecError` (one line per problem) when the stack uses
    something stackctl accepts but cannot carry out (:func:`not_runnable`)."""
    problems = list(not_runnable(stack, raw))
    if problems:
        raise SpecError(problems, hint="stackctl config shows every warning")


# --------------------------------------------------------------------------------------------
# References


def check_references(stack: Stack, raw: Any) -> list[Issue]:
    """Networks, volumes, secrets and configs used by services must be declared."""
    errors = []
    for name, service in stack.services.items():
        base = ("services", name)
        for net in service.networks:
            if net not in stack.networks and net != DEFAULT_NETWORK:
                errors.append(issue_at(raw, base + ("networks", written_key(raw, base + ("networks",), net)),
                                       f"undefined network {net}" + _declare("networks", net),
                                       key=True))
        for i, mount in enumerate(service.volumes):
            if mount.type == "volume" and mount.source and mount.source not in stack.volumes:
                errors.append(issue_at(raw, base + ("volumes", i),
                                       f"undefined volume {mount.source}"
                                       + _declare("volumes", mount.source)))
        for kind in ("secrets", "configs"):
            declared = getattr(stack, kind)
            for i, ref in enumerate(getattr(service, kind)):
                if ref.source not in declared:
                    errors.append(issue_at(raw, base + (kind, i),
                                           f"undefined {kind[:-1]} {ref.source}"
                                           + _declare(kind, ref.source)))
    return errors


def _declare(kind: str, name: str) -> str:
    return f" (declare it under the top-level {kind}: key)"


# --------------------------------------------------------------------------------------------
# Normalization


def normalize(stack: Stack, raw: Any, *, project_name: str, project_dir: str,
              environ: Mapping[str, str]) -> list[Issue]:
    """Fill what needs the project (in place, on models made for this call); return errors."""
    errors: list[Issue] = []
    stack.name = project_name
    for key, network in stack.networks.items():
        network.name = network.name or (key if network.external else f"{project_name}_{key}")
    for group in (stack.volumes, stack.secrets, stack.configs):
        for key, obj in group.items():
            obj.name = obj.name or (key if obj.external else f"{project_name}_{key}")
    for kind in (stack.secrets, stack.configs):
        for obj in kind.values():
            if obj.file is not None:
                obj.file = _absolute(obj.file, project_dir, environ)
    for name, service in stack.services.items():
        errors += _normalize_service(name, service, raw, project_dir, environ)
    return errors


def _normalize_service(name: str, service: Service, raw: Any, project_dir: str,
                       environ: Mapping[str, str]) -> list[Issue]:
    from stackctl.spec.envfile import read_env_file

    errors: list[Issue] = []
    base = ("services", name)
    if service.build is not None and "://" not in service.build.context \
            and not service.build.context.startswith("git@"):
        service.build.context = _absolute(service.build.context, project_dir, environ)
    for mount in service.volumes:
        if mount.type == "bind" and mount.source:
            mount.source = _absolute(mount.source, project_dir, environ)
    for i, opt in enumerate(service.security_opt):  # a seccomp profile file, as a bind source
        key, sep, value = opt.partition("=") if "=" in opt else opt.partition(":")
        if key.strip().lower() == "seccomp" and value not in ("", "unconfined", "builtin"):
            service.security_opt[i] = f"{key}{sep}{_absolute(value, project_dir, environ)}"
    if service.build is not None:
        # `- NAME` build args take the value from the environment (else stay unset)
        service.build.args = {k: v if v is not None else environ.get(k)
                              for k, v in service.build.args.items()}
    if service.label_file:
        labels: dict[str, str] = {}
        for i, path in enumerate(service.label_file):
            path = _absolute(path, project_dir, environ)
            where = issue_at(raw, base + ("label_file", i), "")
            try:
                labels.update((k, v or "") for k, v in read_env_file(
                    path, {}, required=True, where=where.pos, key_path=where.path).items())
            except SpecError as exc:
                errors += exc.issues
        service.labels = {**labels, **service.labels}  # labels written in the file win
        service.label_file = []
    env: dict[str, str | None] = {}
    for i, entry in enumerate(service.env_file):
        entry.path = _absolute(entry.path, project_dir, environ)
        try:
            env.update(read_env_file(entry.path, environ, required=entry.required,
                                     where=issue_at(raw, base + ("env_file", i), "").pos,
                                     key_path=issue_at(raw, base + ("env_file", i), "").path))
        except SpecError as exc:
            errors += exc.issues
    for key, value in service.environment.items():
        # `- KEY` alone: the value comes from the environment (else an env_file, else unset)
        env[key] = value if value is not None else environ.get(key, env.get(key))
    service.environment = env
    for ref in service.secrets:
        ref.target = ref.target or ref.source
    for ref in service.configs:
        ref.target = ref.target or f"/{ref.source}"
    return errors


def _absolute(path: str, base_dir: str, environ: Mapping[str, str]) -> str:
    if path == "~" or path.startswith("~/"):
        home = environ.get("HOME") or os.path.expanduser("~")
        path = home + path[1:]
    if posixpath.isabs(path):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(base_dir, path))


def add_default_network(stack: Stack, project_name: str) -> None:
    """Services without networks (and without network_mode) join ``default``, as in Compose."""
    needs_default = False
    for service in stack.services.values():
        if service.network_mode is None and not service.networks:
            service.networks = {DEFAULT_NETWORK: _service_network()}
        if DEFAULT_NETWORK in service.networks:
            needs_default = True
    if needs_default and DEFAULT_NETWORK not in stack.networks:
        stack.networks = {DEFAULT_NETWORK: Network(name=f"{project_name}_{DEFAULT_NETWORK}"),
                          **stack.networks}


def _service_network():
    from stackctl.spec.models import ServiceNetwork
    return ServiceNetwork()
