"""``stackctl node bootstrap NODE``: install this stackctl on a node over SSH, (re)start its
agent, and give the manager a key that the node accepts for the agent protocol only.

The steps (``--dry-run`` prints them; docs/nodes.md says why each is so):

1. build a wheel of the running stackctl (``pip wheel --no-deps --no-build-isolation`` of a
   copy of the source tree), cached per version and source hash;
2. probe the node over one SSH connection (all steps share it): its ``python3`` (>= 3.11),
   which runtime Debian packages it lacks, where its prefix/state/authorized_keys are, what
   build it runs;
3. ``apt-get install`` the missing packages (skipped when none is missing);
4. copy the wheel (SFTP) and install it into a venv at ``${STACKCTL_PREFIX:-/opt/stackctl}``
   (``--system-site-packages``; ``pip install --no-deps`` of the wheel, then the Python
   dependencies the node lacks, from PyPI); pip's console script is the launcher
   ``<prefix>/bin/stackctl``; ``<prefix>/BUILD`` records version and source hash;
5. restart the node's agent from the new install: ``agent stop`` then ``agent serve``.
   Containers do not depend on the agent (each has its own monitor process), so none stops;
   the new agent re-adopts them;
6. the manager's key: ``<state>/manager_id_ed25519`` on the manager node, made once; on the
   node, one ``authorized_keys`` entry forcing ``<prefix>/bin/stackctl agent dial-stdio``
   with ``restrict`` (no shell, no pty, no forwarding); the node's host key (as the CLI's
   known_hosts trusts it) goes into the manager's ``<state>/known_hosts``.

Running it again upgrades in place: the same steps, the venv kept, the package reinstalled,
the agent restarted, the key entries left as they are. Several nodes at once
(:func:`bootstrap_nodes`): the wheel built once, the manager first, the others in parallel.

The node side of each step is :mod:`stackctl.cluster.nodeside`, sent as source text to the
node's ``python3``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from stackctl import __version__
from stackctl.cluster import nodeside
from stackctl.cluster.inventory import Inventory, Node
from stackctl.errors import StackctlError

# scripts/setup's APT_PACKAGES that the runtime needs (not those for tests and benchmarks:
# runc, crun, skopeo, umoci, openssh-*, hyperfine, docker-registry, apache2-utils, iperf3,
# tcpdump), plus what the install itself needs (a venv and pip)
RUNTIME_PACKAGES = ("busybox-static", "iproute2", "iptables", "nftables", "catatonit", "procps")
INSTALL_PACKAGES = ("python3-venv", "python3-pip")
NODE_PACKAGES = RUNTIME_PACKAGES + INSTALL_PACKAGES
MIN_PYTHON = (3, 11)
PREFIX_TEXT = "${STACKCTL_PREFIX:-/opt/stackctl}"


class BootstrapError(StackctlError):
    """A bootstrap step failed on a node (named, with the step)."""


Echo = Callable[[str], None]


# -- the wheel ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wheel:
    path: str
    version: str
    source_hash: str
    cached: bool


def project_root() -> str:
    """The source tree of the running stackctl (the folder with its pyproject.toml)."""
    import stackctl

    root = os.path.dirname(os.path.dirname(os.path.abspath(stackctl.__file__)))
    if not os.path.isfile(os.path.join(root, "pyproject.toml")):
        raise StackctlError(f"stackctl runs from {root}, which is not a source tree (no "
                            "pyproject.toml): bootstrap builds its wheel from the source",
                            hint="run `stackctl node bootstrap` from a checkout of stackctl")
    return root


def _source_files(root: str) -> list[str]:
    """What goes into the wheel, relative to ``root``: pyproject.toml, README.md and the
    package's files (no caches)."""
    out = [f for f in ("pyproject.toml", "README.md") if os.path.isfile(os.path.join(root, f))]
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, "stackctl")):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if not name.endswith((".pyc", ".pyo")):
                out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def source_hash(root: str) -> str:
    """A hash of the sources a wheel is built from (names and contents), 16 hex digits."""
    h = hashlib.sha256()
    for rel in _source_files(root):
        h.update(rel.encode() + b"\0")
        with open(os.path.join(root, rel), "rb") as f:
            h.update(hashlib.sha256(f.read()).digest())
    return h.hexdigest()[:16]


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "stackctl", "wheels")


def _version_of(root: str) -> str:
    import re

    with open(os.path.join(root, "stackctl", "__init__.py")) as f:
        m = re.search(r'^__version__\s*=\s*"([^"]+)"', f.read(), re.M)
    return m.group(1) if m else __version__


def cached_wheel(root: str, cache: str | None = None) -> Wheel | None:
    version, digest = _version_of(root), source_hash(root)
    d = os.path.join(cache or cache_dir(), f"{version}-{digest}")
    if os.path.isdir(d):
        for name in os.listdir(d):
            if name.endswith(".whl"):
                return Wheel(os.path.join(d, name), version, digest, True)
    return None


def build_wheel(root: str | None = None, *, cache: str | None = None,
                python: str = sys.executable) -> Wheel:
    """The wheel of the stackctl at ``root`` (default: the running one), from the cache when
    one was built from the same sources. Built from a copy of the tree, so that the build
    leaves nothing (build/, *.egg-info) in the source."""
    root = root or project_root()
    found = cached_wheel(root, cache)
    if found:
        return found
    version, digest = _version_of(root), source_hash(root)
    dest = os.path.join(cache or cache_dir(), f"{version}-{digest}")
    with tempfile.TemporaryDirectory(prefix="stackctl-wheel-") as tmp:
        src = os.path.join(tmp, "src")
        for rel in _source_files(root):
            os.makedirs(os.path.dirname(os.path.join(src, rel)), exist_ok=True)
            shutil.copy2(os.path.join(root, rel), os.path.join(src, rel))
        out = os.path.join(tmp, "out")
        p = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", out, src],
                           capture_output=True, text=True, cwd=tmp)
        wheels = [n for n in os.listdir(out)] if os.path.isdir(out) else []
        if p.returncode != 0 or len(wheels) != 1:
            tail = " / ".join((p.stderr.strip() or p.stdout.strip()).splitlines()[-3:])
            raise StackctlError(f"building the stackctl wheel failed: {tail}",
                                hint="it needs pip and setuptools>=68 (scripts/setup installs them)")
        os.makedirs(dest, exist_ok=True)
        final = os.path.join(dest, wheels[0])
        shutil.copy2(os.path.join(out, wheels[0]), final + ".tmp")
        os.replace(final + ".tmp", final)
    return Wheel(final, version, digest, False)


# -- the plan ------------------------------------------------------------------------------------


def plan(inv: Inventory, node: Node, *, root: str | None = None,
         cache: str | None = None) -> list[str]:
    """The steps bootstrap takes for ``node``, as lines (``--dry-run``). Pure but for
    hashing the sources and looking into the wheel cache."""
    root = root or project_root()
    version, digest = _version_of(root), source_hash(root)
    cached = cached_wheel(root, cache)
    manager = inv.manager
    is_manager = node is manager
    where = "this machine" if node.is_local else node.url
    steps = [
        f"build the wheel of stackctl {version} (sources {digest})"
        + (f": cached, {cached.path}" if cached else f" into {cache or cache_dir()}"),
        f"connect to {node.name} ({where}); check python3 >= {MIN_PYTHON[0]}.{MIN_PYTHON[1]} "
        f"and the Debian packages {' '.join(NODE_PACKAGES)}",
        "apt-get install the missing packages (none: skipped)",
        f"copy the wheel to {node.name} and install it into a venv at {PREFIX_TEXT} "
        "(--system-site-packages; pip install --no-deps, then the Python dependencies the node "
        f"lacks); launcher {PREFIX_TEXT}/bin/stackctl",
        f"restart {node.name}'s agent from the new install (agent stop, agent serve): "
        "containers keep running",
    ]
    if is_manager:
        steps.append(f"make the manager's key <state>/{nodeside.MANAGER_KEY_NAME} on {node.name} "
                     "(once)")
    elif manager is not None:
        steps += [
            f"make the manager's key <state>/{nodeside.MANAGER_KEY_NAME} on {manager.name} (once)",
            f"authorize it on {node.name} (${{STACKCTL_AUTHORIZED_KEYS:-~/.ssh/authorized_keys}}) "
            f'for `{PREFIX_TEXT}/bin/stackctl agent dial-stdio` only (command="...",restrict)',
            f"add {node.name}'s host key (from your known_hosts) to {manager.name}'s "
            "<state>/known_hosts",
        ]
    return [f"{i}. {s}" for i, s in enumerate(steps, 1)]


# -- running it ---------------------------------------------------------------------------------


def _nodeside_source() -> bytes:
    with open(nodeside.__file__, "rb") as f:
        return f.read()


class _Remote:
    """The node side over one kept SSH connection (or in-process for a ``local`` node)."""

    def __init__(self, node: Node, conn: Any | None) -> None:
        self.node = node
        self.conn = conn

    async def action(self, name: str, args: dict[str, Any], *, python: str = "python3",
                     timeout: float = 900) -> dict[str, Any]:
        if self.conn is None:
            import trio

            return await trio.to_thread.run_sync(self._local, name, args)
        rc, out, err = await self.conn.run([python, "-", name, json.dumps(args)],
                                           _nodeside_source(), timeout=timeout)
        if rc != 0:
            msg = err.decode(errors="replace").strip().splitlines()
            raise BootstrapError(f"{self.node.name}: {name.replace('_', ' ')} failed: "
                                 + (msg[-1] if msg else f"exit status {rc}"))
        try:
            return json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BootstrapError(f"{self.node.name}: {name} printed no result "
                                 f"({out[-200:]!r})") from None

    def _local(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return nodeside.ACTIONS[name](args)
        except (nodeside.Failed, OSError) as exc:
            raise BootstrapError(f"{self.node.name}: {name.replace('_', ' ')} failed: {exc}") from None


def bootstrap_node(inv: Inventory, node: Node, *, dry_run: bool = False,
                   echo: Echo = print, root: str | None = None,
                   cache: str | None = None) -> dict[str, Any] | None:
    """Bootstrap ``node`` (see the module doc); ``dry_run`` prints the plan only. Returns
    what was done (the probe, the install, the agent before and after)."""
    if dry_run and node.is_local:
        echo(f"bootstrap {node.name} (dry run): this machine runs this stackctl already"
             + ("; make the manager's key <state>/manager_id_ed25519 (once)" if node is inv.manager else ""))
        return None
    if dry_run:
        echo(f"bootstrap {node.name} (dry run, nothing changes):")
        for line in plan(inv, node, root=root, cache=cache):
            echo(f"  {line}")
        return None
    result = bootstrap_nodes(inv, [node], echo=echo, root=root, cache=cache)[node.name]
    if isinstance(result, StackctlError):
        raise result
    return result


def bootstrap_nodes(inv: Inventory, nodes: list[Node], *, echo: Echo = print,
                    root: str | None = None, cache: str | None = None
                    ) -> dict[str, dict[str, Any] | None | StackctlError]:
    """Bootstrap several nodes: the wheel built once; the manager first (its key is made
    there), then the others in parallel, each over its own connection. One node's failure
    does not stop the others: its result is the error."""
    import trio

    results: dict[str, dict[str, Any] | None | StackctlError] = {}
    todo = list({n.name: n for n in nodes}.values())  # once each, in the order given
    todo.sort(key=lambda n: n is not inv.manager)  # the manager first (a stable sort)
    for n in [n for n in todo if n.is_local]:
        # this machine runs the stackctl the CLI is: nothing to install or restart
        echo(f"{n.name}: this machine (url: local) runs this stackctl already; nothing to install")
        if n is inv.manager:
            try:
                results[n.name] = {"manager_key": trio.run(_manager_key, inv, n, _Remote(n, None),
                                                           echo, trio.Lock())}
            except StackctlError as exc:
                results[n.name] = exc
        else:
            results[n.name] = None
    remote = [n for n in todo if not n.is_local]
    if not remote:
        return results
    wheel = build_wheel(root, cache=cache)
    echo(f"wheel stackctl {wheel.version} (sources {wheel.source_hash})"
         + (" from the cache" if wheel.cached else " built") + f": {wheel.path}")

    async def run_all() -> None:
        keys = trio.Lock()  # the manager's key and known_hosts: one change at a time

        async def one(n: Node) -> None:
            try:
                results[n.name] = await _bootstrap(inv, n, wheel, echo, keys)
            except StackctlError as exc:
                results[n.name] = exc

        rest = remote
        if remote[0] is inv.manager:
            await one(remote[0])
            rest = remote[1:]
        async with trio.open_nursery() as nursery:
            for n in rest:
                nursery.start_soon(one, n)

    trio.run(run_all)
    return results


async def _bootstrap(inv: Inventory, node: Node, wheel: Wheel, echo: Echo,
                     keys: Any) -> dict[str, Any]:
    from stackctl.cluster import connect

    async with connect.open_node(inv, node) as conn:
        remote = _Remote(node, conn)
        probe = await remote.action("probe", {"packages": list(NODE_PACKAGES)})
        py = tuple(probe["python"])
        if py < MIN_PYTHON:
            raise BootstrapError(f"{node.name}: python3 is {'.'.join(map(str, py))}; stackctl "
                                 f"needs {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or later",
                                 hint="install a newer Python (Debian 12 has 3.11)")
        prefix = probe["paths"]["prefix"]
        echo(f"{node.name}: python {'.'.join(map(str, py))} ({probe['executable']}), prefix {prefix}")
        missing = probe["missing_packages"]
        if missing is None:
            echo(f"{node.name}: warning: no dpkg there; make sure it has "
                 + " ".join(RUNTIME_PACKAGES))
        elif missing:
            echo(f"{node.name}: apt-get install {' '.join(missing)}")
            await remote.action("apt_install", {"packages": missing})
        old_build = probe.get("build")
        t = time.monotonic()
        remote_wheel = await _ship(conn, node, wheel)
        installed = await remote.action("install", {"wheel": remote_wheel, "version": wheel.version,
                                                    "source_hash": wheel.source_hash})
        was = (f"{old_build['version']} ({old_build['source_hash']})" if old_build else "nothing")
        extra = installed["python_deps_installed"]
        echo(f"{node.name}: installed stackctl {wheel.version} ({wheel.source_hash}) in {prefix}, "
             f"was {was}" + (f"; Python deps from PyPI: {' '.join(extra)}" if extra else "")
             + f" ({time.monotonic() - t:.1f} s)")
        t = time.monotonic()
        agent = await remote.action("restart_agent", {}, timeout=120)
        old = agent.get("old")
        echo(f"{node.name}: agent " + (f"restarted ({old['pid']} -> {agent['new']['pid']}); "
                                        "containers kept running" if old else
                                        f"started (pid {agent['new']['pid']})")
             + f" ({time.monotonic() - t:.1f} s)")
        result = {"probe": probe, "install": installed, "agent": agent}
        result["manager_key"] = await _manager_key(inv, node, remote, echo, keys)
    return result


async def _ship(conn: Any, node: Node, wheel: Wheel) -> str:
    """Copy the wheel to the node; the path it has there."""
    if conn is None:
        return wheel.path
    d = f"/tmp/stackctl-bootstrap.{wheel.source_hash}.{node.id[:12]}"
    rc, _out, err = await conn.run(["mkdir", "-p", "-m", "700", d])
    if rc != 0:
        raise BootstrapError(f"{node.name}: cannot make {d}: {err.decode(errors='replace').strip()}")
    remote = f"{d}/{os.path.basename(wheel.path)}"
    await conn.put(wheel.path, remote)
    return remote


async def _manager_key(inv: Inventory, node: Node, remote: _Remote, echo: Echo,
                       keys: Any) -> dict[str, Any]:
    async with keys:
        return await _manager_key_locked(inv, node, remote, echo)


async def _manager_key_locked(inv: Inventory, node: Node, remote: _Remote,
                              echo: Echo) -> dict[str, Any]:
    from stackctl.cluster import connect

    manager = inv.manager
    assert manager is not None
    if node is manager:
        key = await remote.action("manager_key", {})
        echo(f"{node.name}: manager key {key['key']}" + (" made" if key["made"] else " kept"))
        return key
    host_keys = connect.trusted_host_key_lines(inv, node)
    if not host_keys and not node.is_local:
        echo(f"{node.name}: warning: its host key is not in your known_hosts under its URL's "
             f"host; {manager.name} will refuse it until the key is in its <state>/known_hosts")
    async with connect.open_node(inv, manager) as mconn:
        key = await _Remote(manager, mconn).action("manager_key", {"known_hosts": host_keys})
    if key["made"]:
        echo(f"{manager.name}: manager key {key['key']} made")
    auth = await remote.action("authorize", {"public_key": key["public_key"]})
    echo(f"{node.name}: manager key authorized in {auth['authorized_keys']} for "
         f"`{auth['command']}` only" + ("" if auth["changed"] else " (already)"))
    return {**key, "authorize": auth}
