"""Container names and IDs, as Docker makes and matches them.

Pure: nothing here touches disk. IDs are 64 lowercase hex characters; names follow Docker's
rule ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` (so at least two characters); a name nobody gave is an
``adjective_surname`` pair, with a digit appended when the plain pair is taken.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Iterable

from stackctl.errors import NotFoundError, StackctlError, UsageError

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ID_RE = re.compile(r"^[0-9a-f]{64}$")
SHORT_ID_LEN = 12

# Our own word lists (same shape as Docker's: a mood and a scientist or engineer).
ADJECTIVES = (
    "admiring agile amazing awesome blissful bold brave busy calm clever cool crazy "
    "dazzling determined distracted dreamy eager ecstatic elastic elegant epic exciting "
    "fervent festive focused friendly funny gallant gifted gracious happy hardcore "
    "heuristic hopeful hungry infallible inspiring intelligent jolly keen kind laughing "
    "loving lucid magical modest musing mystifying naughty nervous nice nifty nostalgic "
    "objective optimistic peaceful pedantic pensive practical priceless quirky quizzical "
    "relaxed reverent romantic serene sharp silly sleepy stoic strange stupefied "
    "suspicious sweet tender thirsty trusting unruffled upbeat vibrant vigilant vigorous "
    "wizardly wonderful xenodochial youthful zealous zen"
).split()

SURNAMES = (
    "agnesi albattani allen archimedes ardinghelli babbage banach bardeen bartik bassi "
    "bell benz bhabha bhaskara black blackwell bohr booth borg bose brahmagupta brattain "
    "brown carson cerf chandrasekhar chaplygin chatterjee clarke colden cori curie "
    "darwin davinci dijkstra dubinsky easley einstein elion engelbart euclid euler "
    "faraday fermat fermi feynman franklin galileo gauss germain goldberg goodall "
    "hamilton hawking heisenberg hermann hodgkin hoover hopper hypatia jackson jang "
    "jennings johnson joliot kalam keldysh kepler khorana kilby knuth kowalevski lalande "
    "lamarr leakey leavitt lederberg lovelace lumiere mayer mccarthy mcclintock meitner "
    "mendel mirzakhani montalcini moore morse napier nash newton nobel noether northcutt "
    "noyce panini pascal pasteur payne perlman pike poincare poitras ptolemy raman "
    "ramanujan ride ritchie roentgen rosalind saha sammet shannon shaw shockley sinoussi "
    "snyder spence stonebraker sutherland swanson tesla thompson torvalds turing varahamihira "
    "vaughan villani visvesvaraya volhard wescoff wiles williams wilson wing wozniak wright "
    "yalow yonath"
).split()


def new_id() -> str:
    """A fresh 64-hex container (or anonymous volume) ID."""
    return os.urandom(32).hex()


def short_id(full: str) -> str:
    """The 12-character form Docker prints; a ``sha256:`` prefix is dropped first."""
    if full.startswith("sha256:"):
        full = full[len("sha256:") :]
    return full[:SHORT_ID_LEN]


def validate_name(name: str, what: str = "container") -> str:
    """Return the name without a leading ``/``; raise UsageError if Docker would refuse it."""
    bare = name[1:] if name.startswith("/") else name
    if not NAME_RE.match(bare):
        raise UsageError(
            f"invalid {what} name ({name!r}): only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed, "
            "at least two characters"
        )
    return bare


def random_name(taken: Callable[[str], bool], rng: random.Random | None = None) -> str:
    """A Docker-style ``adjective_surname`` not yet taken (``taken(name)`` says if it is).

    Like Docker, the first try is the plain pair; later tries append a digit.
    """
    r = rng or random.Random()
    for attempt in range(64):
        name = f"{r.choice(ADJECTIVES)}_{r.choice(SURNAMES)}"
        if attempt:
            name += str(r.randint(0, 9))
        if not taken(name):
            return name
    # The lists give ~15,000 pairs; running out means something else is wrong.
    raise StackctlError("could not generate a free container name; give one with --name")


def match(query: str, candidates: Iterable[tuple[str, str]], what: str = "container") -> str:
    """Find one object by name, full ID or unique ID prefix, the order Docker tries them.

    ``candidates`` are ``(id, name)`` pairs; returns the ID. A name matches before an ID
    prefix (Docker resolves the same way), and an exact full ID before both.
    """
    pairs = list(candidates)
    q = query[1:] if query.startswith("/") else query
    for cid, _ in pairs:
        if cid == q:
            return cid
    for cid, name in pairs:
        if name == q:
            return cid
    if q and all(c in "0123456789abcdef" for c in q):
        hits = [cid for cid, _ in pairs if cid.startswith(q)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise StackctlError(
                f"{what} ID prefix {q!r} is ambiguous: it matches {len(hits)} {what}s "
                f"({', '.join(short_id(h) for h in sorted(hits)[:4])}{'...' if len(hits) > 4 else ''})",
                hint="give more characters of the ID, or the name",
            )
    raise NotFoundError(f"no such {what}: {query}")
