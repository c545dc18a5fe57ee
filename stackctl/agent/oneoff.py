"""``stack.run``: a one-off container of a stack's service (``stackctl run -f FILE SERVICE CMD``).

The container is made from the service's config exactly as the controller makes a task
(:func:`stackctl.controller.taskspec.task_request`: image, environment, volumes, secrets and
configs, networks, limits), then changed as ``docker compose run`` changes it:

- labelled ``com.stackctl.oneoff=true`` (with the stack, service and config-hash labels), so
  the planner and the reconcile loop leave it alone and ``down`` removes it;
- named ``<stack>-<service>-run-<id12>`` unless ``name`` is given; slot ``run-<id12>``;
- ``command`` replaces the service's command, ``entrypoint`` (a list, or a string split as
  a shell would; ``""`` clears it) its entrypoint; ``env`` (``K=V``) is appended, ``user``,
  ``workdir``, ``tty``, ``interactive`` override;
- on the service's networks *without* the service's aliases or VIP (Compose's default; its
  ``--use-aliases`` is not offered), no fixed address, no published ports, no health check;
- ``rm``: removed by the runtime once it exits (the attached CLI also removes it).

Networks, named volumes and secret files are created when missing, as ``up`` would for that
service (a one-off task before any ``up`` works, as in Compose). The container is created, not
started, unless ``start`` is true: the CLI starts it itself, attached.
"""

from __future__ import annotations

import dataclasses
import secrets
import shlex
from typing import Any

from stackctl.errors import NotFoundError, StackctlError, UsageError


async def create_oneoff(ctx: Any, params: dict[str, Any]) -> tuple[str, str | None]:
    """Create the one-off container ``params`` asks for (docs/agent-api.md); its id and node
    (on a cluster: a node that runs the service's tasks, where its networks, volumes and
    image are; else the manager's)."""
    from stackctl.controller import objects
    from stackctl.controller.context import Progress
    from stackctl.controller.deploy import (
        DeployOptions,
        Loaded,
        ensure_images,
        ensure_resources,
        load_stack,
        service_nodes,
        version_of,
        write_objects,
    )
    from stackctl.controller.taskspec import image_ref, task_request
    from stackctl.controller.watch import observe
    from stackctl.net.sandbox import Attachment
    from stackctl.scheduler.tasks import Task

    stack_json = params.get("stack")
    if not isinstance(stack_json, dict):
        raise UsageError("missing parameter 'stack'")
    project_dir = params.get("project_dir") or "/"
    service = params.get("service")
    if not isinstance(service, str) or not service:
        raise UsageError("missing parameter 'service'")
    stack, graph = load_stack(stack_json, project_dir)
    name = stack.name or ""
    if service not in stack.services:
        raise NotFoundError(f"stack {name}: no such service: {service}",
                            hint=f"services: {', '.join(sorted(stack.services))}")
    s = stack.services[service]
    prog = Progress(name, None, ctx.wall)
    loaded = Loaded(stack, graph, project_dir)
    opts_in = DeployOptions.from_json(params.get("options"))
    loaded.image_ids = await ensure_images(ctx, prog, stack, project_dir, [service], opts_in)

    needed = {f"{kind}:{ref.source}" for kind, refs in (("secret", s.secrets),
                                                         ("config", s.configs))
              for ref in refs}
    contents = objects.resolve_contents(
        stack, provided=objects.decode_provided(params.get("objects")), needed=needed) \
        if needed else {}
    from stackctl.scheduler.confighash import content_digest

    loaded.digests = {ref: content_digest(v) for ref, v in contents.items()}
    desired = loaded.desired()
    await ensure_resources(ctx, prog, stack, [service])
    await write_objects(ctx, loaded, desired, [service], contents)

    image_config = await ctx.node.image_config(image_ref(name, service, s))
    version = version_of(ctx, loaded, desired, service, image_config)

    task_id = secrets.token_hex(12)
    slot = f"run-{task_id[:12]}"
    st = desired.services[service]
    task = Task(name, service, slot, st.config_hash)
    netc = None
    other = st.network_mode_service
    if other is not None:
        observed = await observe(ctx, name)
        svc = observed.services.get(other)
        netc = next((so.primary.id for so in (svc.slots.values() if svc else ())
                     if so.primary.running), None)
    req = task_request(stack, service, task, task_id=task_id, objects_dir=version.objects_dir,
                       image_config=image_config, network_container=netc)
    opts = dataclasses.replace(req.opts, labels={**req.opts.labels,
                                                 **task.labels(task_id, oneoff=True)})
    _override(opts, params)
    networks = [Attachment(a.network, [], None) for a in req.networks]
    cname = params.get("name") or f"{name}-{service}-{slot}"
    if not isinstance(cname, str):
        raise UsageError("parameter 'name' must be a string")
    placed = service_nodes(ctx, name, service)
    node = placed[0] if placed else None
    if getattr(ctx, "overlay", None) is not None:  # overlay networks: the manager's address
        import types

        ctx.overlay.prepare(name, "", node, types.SimpleNamespace(
            opts=opts, networks=networks, endpoint_mode=req.endpoint_mode), oneoff=True)
    cid = await ctx.node.create_container(opts, node=node, name=cname, networks=networks,
                                          ports=[], service="",
                                          endpoint_mode=req.endpoint_mode, health=None)
    if params.get("start"):
        try:
            await ctx.node.start_container(cid)
        except BaseException:
            import trio

            with trio.CancelScope(shield=True):
                await ctx.node.remove_container(cid, volumes=True)
            raise
    return cid, await ctx.node.node_of(cid)


def _override(opts: Any, params: dict[str, Any]) -> None:
    """``run``'s flags over the service's config (in place)."""
    command = params.get("command")
    if command:
        if not isinstance(command, list) or not all(isinstance(a, str) for a in command):
            raise UsageError("parameter 'command' must be a list of strings")
        opts.command = list(command)
    entrypoint = params.get("entrypoint")
    if entrypoint is not None:
        if isinstance(entrypoint, str):
            try:
                opts.entrypoint = shlex.split(entrypoint)
            except ValueError as exc:
                raise UsageError(f"invalid --entrypoint {entrypoint!r}: {exc}") from None
        elif isinstance(entrypoint, list) and all(isinstance(a, str) for a in entrypoint):
            opts.entrypoint = list(entrypoint)
        else:
            raise UsageError("parameter 'entrypoint' must be a string or a list of strings")
    env = params.get("env") or []
    if not isinstance(env, list) or not all(isinstance(e, str) for e in env):
        raise UsageError("parameter 'env' must be a list of strings")
    for e in env:
        if "=" not in e:
            raise StackctlError(f"environment variable {e!r} has no value",
                                hint="the CLI resolves `-e NAME` from its environment")
    opts.env = [*opts.env, *env]
    for key, attr in (("user", "user"), ("workdir", "workdir")):
        value = params.get(key)
        if value:
            if not isinstance(value, str):
                raise UsageError(f"parameter {key!r} must be a string")
            setattr(opts, attr, value)
    if params.get("tty"):
        opts.tty = True
    if params.get("interactive"):
        opts.stdin_open = True
    opts.auto_remove = bool(params.get("rm"))
