"""Dockerfile parser (pure: text in, instructions out).

Follows the Dockerfile reference / BuildKit's parser:

- parser directives (``# syntax=...``, ``# escape=`` with ``\\`` or a backtick, ``# check=``)
  only at the very top, before any comment, blank line or instruction;
- comment lines (first non-blank character ``#``) are dropped, also inside continuations;
- a line ending with the escape character (trailing blanks allowed) continues on the next;
  the pieces are joined without adding anything; blank continuation lines are skipped;
- instruction names are case-insensitive; leading ``--flag=value`` options are split off;
- exec form (a JSON array of strings) vs shell form, for RUN, CMD, ENTRYPOINT, SHELL, COPY,
  ADD, VOLUME and HEALTHCHECK CMD.

Variable substitution is *not* done here: it needs the build's state (ARG and ENV values);
the builder does it with :mod:`words`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from stackctl.errors import StackctlError
from stackctl.runtime.images.build.words import split_words

COMMANDS = {
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
}
FLAGS = {
    "FROM": {"platform"},
    "COPY": {"from", "chown", "chmod", "link", "parents", "exclude"},
    "ADD": {"chown", "chmod", "link", "keep-git-dir", "checksum", "exclude"},
    "RUN": {"mount", "network", "security"},
    "HEALTHCHECK": {"interval", "timeout", "start-period", "start-interval", "retries"},
}
JSON_FORM = {"RUN", "CMD", "ENTRYPOINT", "SHELL", "COPY", "ADD", "VOLUME"}

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_FLAG = re.compile(r"^--([a-zA-Z][a-zA-Z0-9-]*)(?:=(\S*))?(?:\s+|$)")


class DockerfileError(StackctlError):
    """A Dockerfile cannot be parsed; the message starts with ``file:line:``."""

    exit_code = 2


@dataclass(frozen=True)
class Instruction:
    cmd: str  # upper case, e.g. "COPY"
    rest: str  # the text after the command and its flags (continuations joined)
    flags: dict[str, list[str]] = field(default_factory=dict)  # --name=value (repeatable)
    exec_form: list[str] | None = None  # the JSON array, when given in exec form
    line: int = 0  # first line of the instruction
    original: str = ""  # the whole logical line as written (for history and cache keys)

    def flag(self, name: str, default: str = "") -> str:
        values = self.flags.get(name)
        return values[-1] if values else default

    @property
    def words(self) -> list[str]:
        """Shell-form arguments split on whitespace outside quotes (quotes kept)."""
        return split_words(self.rest)


@dataclass(frozen=True)
class Dockerfile:
    instructions: list[Instruction]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)


def parse(text: str, filename: str = "Dockerfile") -> Dockerfile:
    lines = text.splitlines()
    directives, escape, start = _directives(lines, filename)
    cont = re.compile(re.escape(escape) + r"[ \t]*$")
    out: list[Instruction] = []
    i = start
    while i < len(lines):
        raw = lines[i]
        if not raw.strip() or raw.lstrip().startswith("#"):
            i += 1
            continue
        first = i + 1
        pieces: list[str] = []
        line = raw
        while True:
            m = cont.search(line)
            if not m:
                pieces.append(line)
                i += 1
                break
            pieces.append(line[: m.start()])
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1  # comments and blank lines inside a continuation are skipped
            if i >= len(lines):
                break
            line = lines[i]
        out.append(_instruction("".join(pieces), first, filename))
    if not out:
        raise DockerfileError(f"{filename}: the Dockerfile is empty", hint="it needs at least a FROM")
    return Dockerfile(instructions=out, escape=escape, directives=directives)


def _directives(lines: list[str], filename: str) -> tuple[dict[str, str], str, int]:
    found: dict[str, str] = {}
    i = 0
    for i, line in enumerate(lines):
        m = _DIRECTIVE.match(line.strip())
        if not m:
            break
        key = m.group(1).lower()
        if key in found:
            raise DockerfileError(f"{filename}:{i + 1}: only one {key} parser directive can be used")
        found[key] = m.group(2)
    else:
        i = len(lines)
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise DockerfileError(f"{filename}: invalid escape token {escape!r}", hint="use \\ or `")
    return found, escape, i


def _instruction(text: str, line: int, filename: str) -> Instruction:
    where = f"{filename}:{line}"
    stripped = text.strip()
    word, _, rest = stripped.partition(" ")
    if "\t" in word:
        word, _, more = word.partition("\t")
        rest = more + " " + rest
    cmd = word.upper()
    rest = rest.strip()
    if cmd not in COMMANDS:
        raise DockerfileError(f"{where}: unknown instruction: {word}",
                              hint="see https://docs.docker.com/reference/dockerfile/")
    flags: dict[str, list[str]] = {}
    allowed = FLAGS.get(cmd, set())
    while allowed and rest.startswith("--"):
        m = _FLAG.match(rest)
        if not m:
            break
        name, value = m.group(1), m.group(2)
        if name not in allowed:
            raise DockerfileError(f"{where}: {cmd} does not support the flag --{name}")
        flags.setdefault(name, []).append(value if value is not None else "true")
        rest = rest[m.end():]
    exec_form = None
    if cmd in JSON_FORM and rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            exec_form = value
        elif cmd == "SHELL":
            raise DockerfileError(f"{where}: SHELL requires the arguments to be in JSON form",
                                  hint='e.g. SHELL ["/bin/sh", "-c"]')
    elif cmd == "SHELL":
        raise DockerfileError(f"{where}: SHELL requires the arguments to be in JSON form",
                              hint='e.g. SHELL ["/bin/sh", "-c"]')
    ins = Instruction(cmd=cmd, rest=rest, flags=flags, exec_form=exec_form, line=line, original=stripped)
    _check(ins, where)
    return ins


def _check(ins: Instruction, where: str) -> None:
    cmd, rest = ins.cmd, ins.rest
    need_args = {"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "MAINTAINER", "ONBUILD",
                 "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR", "HEALTHCHECK"}
    if cmd in need_args and not rest:
        raise DockerfileError(f"{where}: {cmd} requires at least one argument")
    if cmd in ("COPY", "ADD"):
        n = len(ins.exec_form) if ins.exec_form is not None else len(rest.split())
        if n < 2:
            raise DockerfileError(f"{where}: {cmd} requires at least two arguments: a source and a destination")
    if cmd == "FROM":
        words = rest.split()
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise DockerfileError(f"{where}: FROM requires either one or three arguments (FROM image [AS name])")
        if len(words) == 3 and not re.match(r"^[a-zA-Z][a-zA-Z0-9_.-]*$", words[2]):
            raise DockerfileError(f"{where}: invalid stage name {words[2]!r}")
    if cmd == "HEALTHCHECK":
        head = rest.split(None, 1)[0].upper()
        if head not in ("NONE", "CMD"):
            raise DockerfileError(f"{where}: HEALTHCHECK needs NONE or CMD <command>")
        if head == "NONE" and (len(rest.split()) > 1 or ins.flags):
            raise DockerfileError(f"{where}: HEALTHCHECK NONE takes no other arguments")
    if cmd == "ONBUILD":
        inner = rest.split(None, 1)[0].upper()
        if inner in ("ONBUILD", "FROM", "MAINTAINER"):
            raise DockerfileError(f"{where}: {inner} isn't allowed as an ONBUILD trigger")
    if cmd in ("ENV", "LABEL"):
        words = split_words(rest)
        if "=" not in words[0] and len(words) < 2:
            raise DockerfileError(f"{where}: {cmd} must have two arguments (KEY VALUE or KEY=VALUE)")


def key_values(ins: Instruction) -> list[tuple[str, str]]:
    """ENV / LABEL / ARG pairs, values still raw (quotes kept; expand them with ``words``).

    ``ENV a=1 b="x y"`` -> [("a", "1"), ("b", '"x y"')]; the legacy ``ENV a x y`` -> [("a", "x y")].
    ARG without a default gives the value ``None``-like "" with a missing "=": see :func:`arg_defs`.
    """
    words = split_words(ins.rest)
    if ins.cmd in ("ENV", "LABEL") and "=" not in words[0]:
        key, _, value = ins.rest.partition(" ")
        return [(key, value.strip())]
    pairs = []
    for w in words:
        if "=" not in w:
            raise DockerfileError(f"line {ins.line}: {ins.cmd} expects KEY=VALUE pairs, got {w!r}")
        k, _, v = w.partition("=")
        if not k:
            raise DockerfileError(f"line {ins.line}: {ins.cmd} has an empty key in {w!r}")
        pairs.append((k, v))
    return pairs


def arg_defs(ins: Instruction) -> list[tuple[str, str | None]]:
    """``ARG a b=2`` -> [("a", None), ("b", "2")] (defaults raw, quotes kept)."""
    out: list[tuple[str, str | None]] = []
    for w in split_words(ins.rest):
        if "=" in w:
            k, _, v = w.partition("=")
            out.append((k, v))
        else:
            out.append((w, None))
    return out


def from_parts(ins: Instruction) -> tuple[str, str]:
    """``FROM image AS name`` -> ("image", "name") (image still unexpanded)."""
    words = ins.rest.split()
    return words[0], (words[2] if len(words) == 3 else "")
