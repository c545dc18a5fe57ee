"""Keys of the Compose specification that stackctl accepts but does not carry out (yet).

This is the ONE list of them. A stack file using one of these keys is valid; stackctl warns
(``not supported by stackctl yet; ignored``) with the key's position, keeps the value, and
prints it again in ``stackctl config`` output — it is never silently dropped.

Areas name the model the key belongs to (``service``, ``deploy``, ...). Values that are
accepted but not carried out (a logging driver other than json-file/none, ``ipc: host``...)
are listed in :data:`UNSUPPORTED_VALUES` and checked in :mod:`stackctl.spec.validate`.
"""

from __future__ import annotations

UNSUPPORTED: dict[str, frozenset[str]] = {
    "stack": frozenset({"models"}),
    "service": frozenset({
        "annotations", "attach", "blkio_config", "cgroup", "cgroup_parent", "cpu_count",
        "cpu_percent", "cpu_period", "cpu_quota", "cpu_rt_period", "cpu_rt_runtime",
        "cpu_shares", "cpuset", "credential_spec", "develop", "device_cgroup_rules", "devices",
        "dns_opt", "external_links", "gpus", "group_add", "isolation", "links",
        "mac_address", "mem_swappiness", "memswap_limit", "models", "oom_kill_disable",
        "oom_score_adj", "platform", "post_start", "pre_stop", "provider",
        "pull_refresh_after", "runtime",
        "storage_opt", "use_api_socket", "userns_mode", "uts",
    }),
    "build": frozenset({
        "additional_contexts", "cache_from", "cache_to", "dockerfile_inline", "entitlements",
        "extra_hosts", "isolation", "labels", "network", "no_cache", "no_cache_filter",
        "platforms", "privileged",
        "provenance", "pull", "sbom", "secrets", "shm_size", "ssh", "tags", "ulimits",
    }),
    "deploy": frozenset(),
    "resources": frozenset({"devices", "generic_resources"}),
    "port": frozenset({"app_protocol"}),
    "mount": frozenset({"consistency", "image"}),
    "bind": frozenset({"recursive"}),
    "volume_options": frozenset({"labels"}),
    "service_network": frozenset({
        "driver_opts", "gw_priority", "interface_name", "link_local_ips", "mac_address",
        "priority",
    }),
    "network": frozenset({"enable_ipv4"}),
    "ipam": frozenset(),
    "volume": frozenset(),
    "secret": frozenset({"driver", "driver_opts", "template_driver"}),
    "config": frozenset({"template_driver"}),
    "healthcheck": frozenset(),
    "logging": frozenset(),
}

#: service keys whose value is carried out only for some values: key -> values supported
SUPPORTED_VALUES: dict[str, frozenset[str]] = {
    "ipc": frozenset({"private", "shareable"}),
    "pid": frozenset(),  # only the default (own pid namespace)
}

#: logging drivers the agent carries out; others are accepted with a warning
LOG_DRIVERS = frozenset({"json-file", "local", "none"})

NOT_SUPPORTED = "not supported by stackctl yet; ignored"


def unsupported_keys(area: str) -> frozenset[str]:
    """The accepted-but-ignored keys of one area."""
    return UNSUPPORTED.get(area, frozenset())


def check_unsupported(area: str, key: str, value: object) -> None:
    """Validate a key that is accepted but not carried out (its shape, :mod:`.shapes`);
    raises :class:`~stackctl.spec.models.core.Invalid`."""
    from stackctl.spec.models.shapes import shape_of
    shape_of(area, key)(value)
