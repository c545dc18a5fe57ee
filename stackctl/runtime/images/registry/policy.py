"""``pull_policy`` for ``up``: when to pull (pure), and pulling when needed (blocking).

``should_pull(policy, image_present, last_pulled_at, now)``:

===================  =============================================================
``always``           every time
``missing``          only when the image is not on the node (``if_not_present`` too)
``never``            never (a missing image is an error for the caller)
``build``            never: the service's ``build:`` makes the image
``daily``/``weekly`` when missing, or the last pull is 24 h / 7 d old or more (or unknown)
``every_<d>``        likewise after ``d`` (Go durations such as ``12h``/``90m``, plus ``d``/``w``)
===================  =============================================================

``ensure_image(paths, ref, policy, auth=None, progress=None)`` returns an
:class:`EnsuredImage`: the local image ID and ``pinned``, ``registry/repo@sha256:...`` — the
digest the tag resolved to on the registry (an index digest for a multi-arch tag). A manager
resolves once and hands ``pinned`` (with the policy ``missing``) to every node, so all nodes run
the very same image even if the tag moves during the rollout; each node still picks its own
platform from an index. See docs/registry.md.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from stackctl.errors import NotFoundError, UsageError
from stackctl.paths import NodePaths
from stackctl.runtime.images.registry.auth import RegistryAuth
from stackctl.runtime.images.registry.progress import Progress
from stackctl.runtime.images.registry.records import Records
from stackctl.runtime.images.registry.reference import parse_ref

DAY = 86400.0
_PERIODIC = {"daily": DAY, "weekly": 7 * DAY}
_EXTRA_UNITS = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(.*)$")


def policy_interval(policy: str) -> float | None:
    """Seconds between pulls for daily/weekly/every_<d>; None for the other policies."""
    if policy in _PERIODIC:
        return _PERIODIC[policy]
    if not policy.startswith("every_"):
        return None
    text = policy[len("every_"):]
    m = _EXTRA_UNITS.match(text)
    weeks, days, rest = (int(m.group(1) or 0), int(m.group(2) or 0), m.group(3)) if m else (0, 0, text)
    seconds = weeks * 7 * DAY + days * DAY
    if rest:
        from stackctl.spec.units import SECOND, parse_duration

        try:
            seconds += parse_duration(rest) / SECOND
        except ValueError as exc:
            raise UsageError(f"invalid pull_policy {policy!r}: {exc}") from None
    if seconds <= 0 and not (text and (weeks or days or rest)):
        raise UsageError(f"invalid pull_policy {policy!r}: every_ needs a duration such as every_12h")
    return seconds


def should_pull(policy: str, image_present: bool, last_pulled_at: float | None, now: float) -> bool:
    """Whether ``up`` pulls (pure). ``last_pulled_at``/``now`` are UNIX times."""
    policy = "missing" if policy in ("if_not_present", "") else policy
    if policy == "always":
        return True
    if policy in ("never", "build"):
        return False
    if policy == "missing":
        return not image_present
    interval = policy_interval(policy)
    if interval is None:
        raise UsageError(f"unknown pull_policy {policy!r}; use always, missing, never, build, daily, "
                         "weekly or every_<duration>")
    if not image_present or last_pulled_at is None:
        return True
    return now - last_pulled_at >= interval


@dataclass(frozen=True)
class EnsuredImage:
    image_id: str
    pinned: str  # registry/repo@sha256:... ("" when the image was never pulled: built or loaded here)
    pulled: bool  # this call went to the registry
    node_ref: str = ""  # what to hand the other nodes: repo:tag@sha256:... (the tag names it locally)


def ensure_image(paths: NodePaths, ref: str, policy: str = "missing", auth: RegistryAuth | None = None,
                 progress: Progress | None = None, *, now: float | None = None, platform: str | None = None,
                 _pull=None) -> EnsuredImage:
    """Make ``ref`` present on this node as ``policy`` says; blocking (the agent runs it in a
    thread). ``auth`` is used for this pull only and never stored. ``ref`` may be pinned
    (``name@sha256:...`` or ``name:tag@sha256:...``): a digest already pulled is not asked for
    again, whatever the policy, since its content cannot change."""
    from stackctl.runtime.images.store import ImageStore

    store = ImageStore(paths.images)
    r = parse_ref(ref)
    records = Records(store.root)
    now = time.time() if now is None else now
    local = _local(store, records, r)
    if r.digest and local is not None:
        return EnsuredImage(local.id, f"{r.full_name}@{r.digest}", False, _node_ref(r, r.digest))
    last = records.last_pull(r.local_tag) if r.local_tag else None
    last_at = float(last["pulled_at"]) if last and local is not None and last.get("image_id") == local.id else None
    if not should_pull(policy, local is not None, last_at, now):
        if local is None:
            how = "build it" if policy == "build" else f"pull it (stackctl pull {ref})"
            raise NotFoundError(f"image {ref} is not on this node and pull_policy is {policy}; {how} "
                                "or change pull_policy")
        if last and last.get("image_id") == local.id:
            return EnsuredImage(local.id, f"{r.full_name}@{last['digest']}", False, _node_ref(r, last["digest"]))
        return EnsuredImage(local.id, "", False)
    if _pull is None:
        from stackctl.runtime.images.registry.pull import pull as _pull
    result = _pull(store, r, auth=auth, progress=progress, platform=platform)
    return EnsuredImage(result.image.id, result.pinned, True, _node_ref(r, result.digest))


def _node_ref(r, digest: str) -> str:
    name = r.local_tag or r.familiar_repository
    return f"{name}@{digest}"


def _local(store, records: Records, r):
    """The local image ``r`` names, or None."""
    if r.digest:
        image_id = records.image_for_digest(r.full_name, r.digest)
        for img in store.list():
            if img.id == image_id or img.manifest_digest == r.digest:
                return img
        return None
    try:
        return store.resolve(r.local_tag)
    except NotFoundError:
        return None
