"""The node's half of ``stackctl node bootstrap``: runs ON the node, sent over SSH as source
text to its ``python3`` (``python3 - ACTION JSON``), before stackctl is installed there — so
the standard library only, and no import of stackctl.

Each action takes a JSON object and prints one JSON object (its result) on stdout; a failure
is a message on stderr and exit status 3. The pure parts (:func:`authorized_keys_text`,
:func:`merge_known_hosts`) are tested locally without a node.

Where things go on the node (its sshd's environment decides; on a real host the defaults):

- ``STACKCTL_PREFIX`` (``/opt/stackctl``): the venv, its ``bin/stackctl``, ``BUILD``;
- ``STACKCTL_STATE_DIR`` / ``STACKCTL_RUN_DIR``: the agent's, as everywhere;
- ``STACKCTL_AUTHORIZED_KEYS`` (``~/.ssh/authorized_keys``): where the manager's key goes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

DEFAULT_PREFIX = "/opt/stackctl"
MANAGER_KEY_NAME = "manager_id_ed25519"
MANAGER_KEY_COMMENT = "stackctl-manager"
BUILD_FILE = "BUILD"


class Failed(Exception):
    """A step failed on the node: the message is what the CLI shows."""


def env_paths(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    home = env.get("HOME") or os.path.expanduser("~")
    return {
        "prefix": env.get("STACKCTL_PREFIX") or DEFAULT_PREFIX,
        "state": env.get("STACKCTL_STATE_DIR") or "/var/lib/stackctl",
        "run": env.get("STACKCTL_RUN_DIR") or "/run/stackctl",
        "authorized_keys": env.get("STACKCTL_AUTHORIZED_KEYS")
        or os.path.join(home, ".ssh", "authorized_keys"),
    }


def _run(argv: list[str], *, env: dict[str, str] | None = None, what: str | None = None,
         timeout: float = 600) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                           cwd="/", stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise Failed(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise Failed(f"{what or argv[0]} took more than {timeout:g} s") from None
    if p.returncode != 0:
        tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
        raise Failed(f"{what or ' '.join(argv)} failed (exit {p.returncode}): " + " / ".join(tail))
    return p.stdout


def _missing_packages(packages: list[str]) -> list[str] | None:
    """Debian packages not installed (None: no dpkg here, so nothing is known)."""
    missing = []
    for pkg in packages:
        try:
            p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True,
                               text=True, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            return None
        if "install ok installed" not in p.stdout:
            missing.append(pkg)
    return missing


def _read_build(prefix: str) -> dict | None:
    try:
        with open(os.path.join(prefix, BUILD_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _agent_status(prefix: str) -> dict | None:
    exe = os.path.join(prefix, "bin", "stackctl")
    if not os.access(exe, os.X_OK):
        return None
    p = subprocess.run([exe, "agent", "status", "--format", "json"], capture_output=True,
                       text=True, stdin=subprocess.DEVNULL, cwd="/")
    try:
        info = json.loads(p.stdout)
    except ValueError:
        return None
    return info if info.get("pid") else None


# -- actions ----------------------------------------------------------------------------------


def probe(args: dict) -> dict:
    """What the node has: Python, the packages, where things go, what is installed."""
    paths = env_paths()
    return {
        "python": list(sys.version_info[:3]), "executable": sys.executable,
        "uid": os.getuid(), "paths": paths,
        "missing_packages": _missing_packages(args.get("packages", [])),
        "build": _read_build(paths["prefix"]),
        "agent": _agent_status(paths["prefix"]),
    }


def apt_install(args: dict) -> dict:
    packages = args["packages"]
    if os.getuid() != 0:
        raise Failed("installing Debian packages needs root: log in as root, or install "
                     + " ".join(packages) + " yourself")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(["apt-get", "update", "-qq"], env=env, what="apt-get update")
    _run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], env=env,
         what="apt-get install " + " ".join(packages))
    still = _missing_packages(packages) or []
    if still:
        raise Failed("apt-get did not install " + " ".join(still))
    return {"installed": packages}


_MISSING_DEPS = r"""
import json, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
missing = []
for text in metadata.requires("stackctl") or []:
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        have = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        missing.append(str(req))
        continue
    if req.specifier and not req.specifier.contains(have, prereleases=True):
        missing.append(str(req))
print(json.dumps(missing))
"""


def install(args: dict) -> dict:
    """The wheel into a venv at the prefix (``--system-site-packages``: the node's own
    Python packages count), the Python deps the node lacks from PyPI, then ``BUILD``."""
    prefix = env_paths()["prefix"]
    py = os.path.join(prefix, "bin", "python")
    created = False
    if not os.path.exists(py):
        os.makedirs(os.path.dirname(prefix) or "/", exist_ok=True)
        _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", prefix],
             what=f"creating the venv {prefix}")
        created = True
    pip = [py, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    # --force-reinstall: an upgrade may keep the version number and change the code
    _run([*pip, "install", "--no-deps", "--force-reinstall", "--no-index", args["wheel"]],
         what="pip install of the stackctl wheel (is python3-pip installed?)")
    missing = json.loads(_run([py, "-c", _MISSING_DEPS], what="checking the Python dependencies"))
    if missing:
        _run([*pip, "install", *missing], what="pip install " + " ".join(missing))
    exe = os.path.join(prefix, "bin", "stackctl")
    version = _run([exe, "--version"], what=f"{exe} --version").strip().split()[-1]
    if version != args["version"]:
        raise Failed(f"{exe} reports version {version}, expected {args['version']}")
    linked = _link_on_path(prefix, exe)
    build = {"version": args["version"], "source_hash": args["source_hash"],
             "installed_at": time.time()}
    tmp = os.path.join(prefix, BUILD_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(build, f)
    os.replace(tmp, os.path.join(prefix, BUILD_FILE))
    try:
        os.unlink(args["wheel"])
    except OSError:
        pass
    return {"prefix": prefix, "created_venv": created, "python_deps_installed": missing,
            "build": build, "linked": linked}


def _link_on_path(prefix: str, exe: str, link: str = "/usr/local/bin/stackctl") -> str | None:
    """On a host installed at the default prefix, ``stackctl`` on PATH for its users: a
    symlink in /usr/local/bin, made only where nothing else is (another install is kept)."""
    if prefix != DEFAULT_PREFIX:
        return None  # a per-node prefix (the demo cluster): PATH is not ours to change
    try:
        current = os.readlink(link)
    except FileNotFoundError:
        current = None
    except OSError:
        return None  # a regular file: someone else's stackctl
    if current not in (None, exe):
        return None
    if current is None:
        try:
            os.symlink(exe, link)
        except OSError:
            return None
    return link


def restart_agent(args: dict) -> dict:
    """Stop the node's agent (containers keep running: they do not depend on it) and start
    the one just installed; returns the old and new ``agent.info``."""
    prefix = env_paths()["prefix"]
    exe = os.path.join(prefix, "bin", "stackctl")
    old = _agent_status(prefix)
    if old is not None:
        _run([exe, "agent", "stop"], what="stackctl agent stop")
    _run([exe, "agent", "serve"], what="stackctl agent serve", timeout=60)
    new = _agent_status(prefix)
    if new is None:
        raise Failed("the agent did not answer after it was started (see its agent.log)")
    return {"old": old, "new": new}


def manager_key(args: dict) -> dict:
    """On the manager: its key (made once), and the workers' host keys it must trust."""
    state = env_paths()["state"]
    key = os.path.join(state, MANAGER_KEY_NAME)
    os.makedirs(state, mode=0o700, exist_ok=True)
    made = False
    if not os.path.exists(key):
        venv_python = os.path.join(env_paths()["prefix"], "bin", "python")
        make_key(key, venv_python if os.path.exists(venv_python) else sys.executable)
        made = True
    with open(key + ".pub") as f:
        pub = f.read().strip()
    known = os.path.join(state, "known_hosts")
    added = 0
    if args.get("known_hosts"):
        added = update_file(known, lambda text: merge_known_hosts(text, args["known_hosts"]))
    return {"public_key": pub, "made": made, "key": key, "known_hosts": known,
            "known_hosts_added": added}


def make_key(path: str, python: str) -> None:
    """An ed25519 key pair at ``path`` / ``path.pub``: with asyncssh (a dependency of
    stackctl, so where stackctl is installed), else OpenSSH's ssh-keygen."""
    script = ("import asyncssh, os, sys\n"
              "k = asyncssh.generate_private_key('ssh-ed25519', comment=sys.argv[2])\n"
              "fd = os.open(sys.argv[1] + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
              "os.write(fd, k.export_private_key()); os.close(fd)\n"
              "open(sys.argv[1] + '.pub', 'wb').write(k.export_public_key())\n"
              "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n")
    try:
        _run([python, "-c", script, path, MANAGER_KEY_COMMENT], what="making the manager's key")
    except Failed:
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", MANAGER_KEY_COMMENT, "-f", path],
             what="ssh-keygen")


def authorize(args: dict) -> dict:
    """Authorize the manager's key on this node for the agent protocol only."""
    paths = env_paths()
    command = os.path.join(paths["prefix"], "bin", "stackctl") + " agent dial-stdio"
    path = paths["authorized_keys"]
    d = os.path.dirname(path)
    if d and not os.path.isdir(d):
        os.makedirs(d, mode=0o700, exist_ok=True)
    changed = update_file(path, lambda text: authorized_keys_text(text, args["public_key"], command),
                          mode=0o600)
    return {"authorized_keys": path, "changed": bool(changed), "command": command}


# -- pure helpers ---------------------------------------------------------------------------


def forced_command_line(public_key: str, command: str) -> str:
    """The authorized_keys entry: ``command`` forced whatever the client asks, and
    ``restrict`` (no pty, no forwarding of ports, agent or X11, no ~/.ssh/rc)."""
    alg, blob = public_key.split()[:2]
    return f'command="{command}",restrict {alg} {blob} {MANAGER_KEY_COMMENT}'


def authorized_keys_text(text: str, public_key: str, command: str) -> str:
    """``text`` with exactly one entry for ``public_key``, forced to ``command``: an older
    entry for the same key (another prefix, no restriction) is replaced in place; other lines
    are kept as they are."""
    blob = public_key.split()[1]
    want = forced_command_line(public_key, command)
    out, placed = [], False
    for line in text.splitlines():
        if blob in line.split():
            if not placed:
                out.append(want)
                placed = True
            continue
        out.append(line)
    if not placed:
        out.append(want)
    return "\n".join(out) + "\n"


def merge_known_hosts(text: str, lines: list[str]) -> str:
    """``text`` plus the ``lines`` (``host alg key``) it does not hold yet; a line naming a
    host and algorithm already there with another key replaces it (the CLI checked the key)."""
    have = text.splitlines()
    by_host_alg = {}
    for i, line in enumerate(have):
        parts = line.split()
        if len(parts) >= 3 and not line.startswith("#"):
            by_host_alg[(parts[0], parts[1])] = i
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        key = (parts[0], parts[1])
        if key in by_host_alg:
            have[by_host_alg[key]] = " ".join(parts[:3])
        else:
            by_host_alg[key] = len(have)
            have.append(" ".join(parts[:3]))
    return "\n".join(have) + "\n" if have else ""


def update_file(path: str, change, mode: int = 0o644) -> int:
    """Rewrite ``path`` with ``change(old text)`` (atomically) if that differs; returns the
    number of lines that changed (0: nothing written)."""
    try:
        with open(path) as f:
            old = f.read()
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        old = ""
    new = change(old)
    if new == old:
        return 0
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(new)
    os.replace(tmp, path)
    return len(set(new.splitlines()) ^ set(old.splitlines()))


ACTIONS = {"probe": probe, "apt_install": apt_install, "install": install,
           "restart_agent": restart_agent, "manager_key": manager_key, "authorize": authorize}


def main(argv: list[str]) -> int:
    try:
        result = ACTIONS[argv[0]](json.loads(argv[1]) if len(argv) > 1 else {})
    except Failed as exc:
        print(str(exc), file=sys.stderr)
        return 3
    except OSError as exc:  # a directory we may not write (not root, a read-only /opt)
        where = f" {exc.filename}" if exc.filename else ""
        print(f"{exc.strerror or exc}:{where} (log in as root, or give the node's sshd another "
              "STACKCTL_PREFIX / STACKCTL_STATE_DIR)", file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
