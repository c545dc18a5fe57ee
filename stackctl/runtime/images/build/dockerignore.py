""".dockerignore matching (pure), as Docker's patternmatcher does it.

- one pattern per line; blank lines and lines starting with ``#`` are ignored;
- a pattern is cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped (patterns
  are relative to the context root);
- Go ``filepath.Match`` syntax: ``*`` (no ``/``), ``?``, ``[a-z]``/``[!a-z]``, ``\\`` escapes;
  plus ``**`` for any number of directories (also none);
- ``!pattern`` re-includes; the *last* matching pattern decides;
- a pattern that matches a parent directory matches everything below it.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Pattern:
    text: str
    regex: re.Pattern[str]
    exclusion: bool  # a "!pattern" line

    def match(self, path: str) -> bool:
        return self.regex.match(path) is not None


def parse(text: str) -> list[Pattern]:
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                continue
        cleaned = posixpath.normpath(line).lstrip("/") or "."
        if cleaned == ".":
            continue
        out.append(Pattern(text=cleaned, regex=re.compile(_to_regex(cleaned)), exclusion=exclusion))
    return out


def _to_regex(pattern: str) -> str:
    out = ["^"]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return "".join(out)


class Matcher:
    def __init__(self, patterns: list[Pattern]) -> None:
        self.patterns = patterns
        self.has_exclusions = any(p.exclusion for p in patterns)

    def excluded(self, path: str) -> bool:
        """Is ``path`` (relative, ``/``-separated) left out of the context?"""
        path = posixpath.normpath(path)
        parents = path.split("/")[:-1]
        result = False
        for p in self.patterns:
            hit = p.match(path)
            if not hit:
                for i in range(1, len(parents) + 1):
                    if p.match("/".join(parents[:i])):
                        hit = True
                        break
            if hit:
                result = not p.exclusion
        return result

    def may_include_below(self, dir_path: str) -> bool:
        """Could an exclusion pattern re-include something below the excluded ``dir_path``?"""
        if not self.has_exclusions:
            return False
        prefix = dir_path.rstrip("/") + "/"
        for p in self.patterns:
            if p.exclusion and (p.text.startswith(prefix) or "*" in p.text or "?" in p.text or "[" in p.text):
                return True
        return False
