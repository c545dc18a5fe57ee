"""The shapes of the keys stackctl accepts but does not carry out (:mod:`.support`).

A key that is not carried out is still validated: ``develop.watch`` without ``action``, a
device reservation with both ``count`` and ``device_ids``, or ``build.ssh:`` with no value
are errors, as in Compose, even though stackctl ignores the key afterwards. The shapes follow
Compose's schema (``compose-spec.json`` as compose-go ships it) plus the checks compose-go
adds after the schema (device reservations).

A shape is a function ``check(value)`` that returns nothing and raises
:class:`~stackctl.spec.models.core.Invalid` with the place (``at``, a tuple of keys and
indexes below the key) and a message. Pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from stackctl.spec.models.core import Invalid

Shape = Callable[[Any], None]


def _describe(value: Any) -> str:
    from stackctl.spec.models.base import describe
    return describe(value)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _fail(what: str, value: Any) -> Invalid:
    return Invalid(f"expected {what}, got {_describe(value)}")


def _nested(at: Any, exc: Invalid) -> Invalid:
    rest = exc.at if isinstance(exc.at, tuple) else tuple(p for p in exc.at.split(".") if p)
    return Invalid(exc.message, (at,) + rest)


def anything(value: Any) -> None:
    return None


def string(value: Any) -> None:
    if not isinstance(value, str):
        raise _fail("a string", value)


def scalar(value: Any) -> None:
    if not (_scalar(value) or isinstance(value, bool)):
        raise _fail("a string, number or boolean", value)


def name_or_id(value: Any) -> None:
    if not _scalar(value):
        raise _fail("a name or a number", value)


def nonempty_string(value: Any) -> None:
    string(value)
    if not value:
        raise Invalid("expected a non-empty string")


def bool_or_string(value: Any) -> None:
    if not isinstance(value, (bool, str)):
        raise _fail("true, false or a string", value)


def number_or_string(value: Any) -> None:
    if not (_scalar(value)):
        raise _fail("a number or a string", value)


def integer_or_string(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _fail("an integer or a string", value)


def enum(*choices: str) -> Shape:
    def check(value: Any) -> None:
        if value not in choices:
            raise Invalid(f"expected one of: {', '.join(choices)}; got {_describe(value)}")
    return check


def list_of(item: Shape, what: str = "a list") -> Shape:
    def check(value: Any) -> None:
        if not isinstance(value, list):
            raise _fail(what, value)
        for i, v in enumerate(value):
            try:
                item(v)
            except Invalid as exc:
                raise _nested(i, exc) from None
    return check


list_of_strings = list_of(string, "a list of strings")


def string_or_list(value: Any) -> None:
    if isinstance(value, str):
        return
    if not isinstance(value, list):
        raise _fail("a string or a list of strings", value)
    list_of_strings(value)


def list_or_dict(value: Any) -> None:
    """Compose's ``list_or_dict``: a mapping of scalars (or null), or a list of strings."""
    if isinstance(value, dict):
        for k, v in value.items():
            if v is not None and not isinstance(v, (str, int, float, bool)):
                raise Invalid(f"expected a string, number, boolean or null, got "
                              f"{_describe(v)}", (k,))
        return
    if isinstance(value, list):
        list_of_strings(value)
        return
    raise _fail("a mapping or a list of strings", value)


def mapping_of(item: Shape) -> Shape:
    def check(value: Any) -> None:
        if not isinstance(value, dict):
            raise _fail("a mapping", value)
        for k, v in value.items():
            try:
                item(v)
            except Invalid as exc:
                raise _nested(k, exc) from None
    return check


def obj(props: dict[str, Shape], *, required: Iterable[str] = (),
        extensible: bool = True, after: Shape | None = None, nullable: bool = False) -> Shape:
    """A mapping with these keys (others refused; ``x-*`` allowed when ``extensible``)."""
    required = tuple(required)

    def check(value: Any) -> None:
        if value is None and nullable:
            return
        if not isinstance(value, dict):
            raise _fail("a mapping", value)
        for key, v in value.items():
            name = str(key)
            if name in props:
                try:
                    props[name](v)
                except Invalid as exc:
                    raise _nested(key, exc) from None
            elif not (extensible and name.startswith("x-")):
                from stackctl.spec.models.base import suggest
                hint = suggest(name, props)
                raise Invalid("unknown key" + (f'; did you mean "{hint}"?' if hint else ""),
                              (key,))
        for key in required:
            if key not in value:
                raise Invalid(f'required key "{key}" is missing')
        if after is not None:
            after(value)
    return check


def one_of(*shapes: Shape, what: str) -> Shape:
    def check(value: Any) -> None:
        for shape in shapes:
            try:
                shape(value)
                return
            except Invalid:
                continue
        raise _fail(what, value)
    return check


# --------------------------------------------------------------------------------------------
# The shapes of Compose's definitions

command = one_of(lambda v: None if v is None else string(v), list_of_strings,
                 what="a command string or a list of strings")

service_hook = obj({
    "command": command, "user": string, "privileged": bool_or_string, "working_dir": string,
    "environment": list_or_dict,
}, required=("command",))


def _device_rules(value: dict) -> None:
    # compose-go, after the schema: count and device_ids exclude each other; a reservation
    # says which capabilities it needs
    if "count" in value and "device_ids" in value:
        raise Invalid('"count" and "device_ids" cannot be used together', ("count",))
    if "capabilities" not in value:
        raise Invalid('a device reservation needs "capabilities" (such as [gpu])')
    count = value.get("count")
    if isinstance(count, str) and count != "all" and not count.strip().isdigit():
        raise Invalid(f'expected an integer or "all", got {_describe(count)}', ("count",))


device_request = obj({
    "capabilities": list_of_strings, "count": integer_or_string, "device_ids": list_of_strings,
    "driver": string, "options": list_or_dict,
}, after=_device_rules)

generic_resource = obj({
    "discrete_resource_spec": obj({"kind": string, "value": number_or_string}),
})

watch_rule = obj({
    "ignore": string_or_list, "include": string_or_list, "path": string,
    "action": enum("rebuild", "sync", "restart", "sync+restart", "sync+exec"),
    "target": string, "exec": service_hook, "initial_sync": bool_or_string,
}, required=("path", "action"))

development = obj({"watch": list_of(watch_rule)}, nullable=True)


def _ssh(value: Any) -> None:
    if value is None:
        raise Invalid('expected "default" or ID=PATH entries, got nothing')
    list_or_dict(value)
    entries = value if isinstance(value, list) else [f"{k}={v}" if v is not None else k
                                                      for k, v in value.items()]
    if not entries:
        raise Invalid('expected "default" or ID=PATH entries, got an empty list')
    for i, entry in enumerate(entries):
        if not str(entry).strip() or str(entry).startswith("="):
            raise Invalid(f"expected \"default\" or ID=PATH, got {_describe(entry)}", (i,))


def _ulimit(value: Any) -> None:
    if isinstance(value, dict):
        obj({"soft": integer_or_string, "hard": integer_or_string},
            required=("soft", "hard"))(value)
    else:
        integer_or_string(value)


service_config_or_secret = list_of(one_of(
    string, obj({"source": string, "target": string, "uid": string, "gid": string,
                 "mode": number_or_string}),
    what="a name or a mapping with source"))

extra_hosts = one_of(mapping_of(one_of(string, list_of_strings, what="an address")),
                     list_of_strings, what="a list of HOST=IP or a mapping")

blkio_limit = obj({"path": string, "rate": integer_or_string}, extensible=False)
blkio_weight = obj({"path": string, "weight": integer_or_string}, extensible=False)

provider = obj({
    "type": nonempty_string,
    "options": mapping_of(one_of(scalar, list_of(scalar),
                                 what="a string, number, boolean or a list of them")),
}, required=("type",))

service_models = one_of(list_of_strings, mapping_of(obj({"endpoint_var": string,
                                                         "model_var": string})),
                        what="a list of model names or a mapping")

gpus = one_of(enum("all"), list_of(device_request), what='"all" or a list of devices')

#: area -> key -> shape (keys listed in :data:`.support.UNSUPPORTED`; missing: any value)
SHAPES: dict[str, dict[str, Shape]] = {
    "stack": {
        "models": mapping_of(obj({"name": string, "model": string, "context_size": integer_or_string,
                                  "runtime_flags": list_of_strings}, required=("model",))),
    },
    "service": {
        "annotations": list_or_dict,
        "attach": bool_or_string,
        "blkio_config": obj({
            "device_read_bps": list_of(blkio_limit), "device_read_iops": list_of(blkio_limit),
            "device_write_bps": list_of(blkio_limit), "device_write_iops": list_of(blkio_limit),
            "weight": integer_or_string, "weight_device": list_of(blkio_weight),
        }, extensible=False),
        "cgroup": enum("host", "private"),
        "cgroup_parent": string,
        "cpu_count": integer_or_string, "cpu_percent": integer_or_string,
        "cpu_period": number_or_string, "cpu_quota": number_or_string,
        "cpu_rt_period": number_or_string, "cpu_rt_runtime": number_or_string,
        "cpu_shares": number_or_string, "cpuset": string,
        "credential_spec": obj({"config": string, "file": string, "registry": string}),
        "develop": development,
        "device_cgroup_rules": list_of_strings,
        "devices": list_of(one_of(string, obj({"source": string, "target": string,
                                               "permissions": string}, required=("source",)),
                                  what="a device path or a mapping with source")),
        "dns_opt": list_of_strings,
        "external_links": list_of_strings,
        "gpus": gpus,
        "group_add": list_of(name_or_id),
        "isolation": string,
        "links": list_of_strings,
        "mac_address": string,
        "mem_swappiness": integer_or_string,
        "memswap_limit": number_or_string,
        "models": service_models,
        "oom_kill_disable": bool_or_string,
        "oom_score_adj": integer_or_string,
        "platform": string,
        "post_start": list_of(service_hook),
        "pre_stop": list_of(service_hook),
        "provider": provider,
        "pull_refresh_after": string,
        "runtime": string,
        "security_opt": list_of_strings,
        "storage_opt": mapping_of(anything),
        "use_api_socket": bool_or_string,
        "userns_mode": string,
        "uts": string,
    },
    "build": {
        "additional_contexts": list_or_dict, "cache_from": list_of_strings,
        "cache_to": list_of_strings, "dockerfile_inline": string,
        "entitlements": list_of_strings, "extra_hosts": extra_hosts, "isolation": string,
        "labels": list_or_dict, "network": string, "no_cache": bool_or_string,
        "no_cache_filter": string_or_list, "platforms": list_of_strings,
        "privileged": bool_or_string, "provenance": bool_or_string, "pull": bool_or_string,
        "sbom": bool_or_string, "secrets": service_config_or_secret, "shm_size": number_or_string,
        "ssh": _ssh, "tags": list_of_strings,
        "ulimits": mapping_of(_ulimit),
    },
    "resources": {
        "devices": list_of(device_request),
        "generic_resources": list_of(generic_resource),
    },
    "port": {"app_protocol": string},
    "mount": {"consistency": string, "image": obj({"subpath": string})},
    "bind": {"recursive": enum("enabled", "disabled", "writable", "readonly")},
    "volume_options": {"labels": list_or_dict},
    "service_network": {
        "driver_opts": mapping_of(number_or_string), "gw_priority": number_or_string,
        "interface_name": string, "link_local_ips": list_of_strings, "mac_address": string,
        "priority": number_or_string,
    },
    "network": {"enable_ipv4": bool_or_string},
    "secret": {"driver": string, "driver_opts": mapping_of(number_or_string),
               "template_driver": string},
    "config": {"template_driver": string},
}


def shape_of(area: str, key: str) -> Shape:
    return SHAPES.get(area, {}).get(key, anything)
