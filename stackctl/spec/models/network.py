"""Networks: a service's attachments (``services.*.networks``) and the top-level ``networks``."""

from typing import Annotated, Any, ClassVar

from stackctl.spec.models.core import BeforeValidator, Field, field_validator

from stackctl.spec.models.base import (
    Bool,
    Model,
    OptsMap,
    Str,
    StrList,
    StrMap,
    TopLevel,
    describe,
    fail,
    str_keys,
)


def _ip(value: Any, version: int | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f"expected an IP address, got {describe(value)}")
    import ipaddress  # here: only files that give addresses pay its import

    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        raise fail(f"expected an IP address, got {describe(value)}") from None
    if version and addr.version != version:
        raise fail(f"expected an IPv{version} address, got {describe(value)}")
    return value


def _subnet(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise fail(f"expected a subnet in CIDR form such as 10.5.0.0/16, got {describe(value)}")
    import ipaddress

    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise fail(f"expected a subnet in CIDR form such as 10.5.0.0/16, got {describe(value)}") \
            from None
    return value


class ServiceNetwork(Model):
    """How a service joins one network."""

    area: ClassVar[str] = "service_network"

    aliases: StrList = Field(default_factory=list)
    ipv4_address: Str | None = None
    ipv6_address: Str | None = None

    @field_validator("ipv4_address", mode="after")
    @classmethod
    def _v4(cls, value: str | None) -> str | None:
        return _ip(value, 4)

    @field_validator("ipv6_address", mode="after")
    @classmethod
    def _v6(cls, value: str | None) -> str | None:
        return _ip(value, 6)


def service_networks(value: Any) -> Any:
    """A list of names, or a map name -> null | options; always a map afterwards."""
    if value is None:
        return {}
    if isinstance(value, list):
        out: dict[str, Any] = {}
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, (str, int)):
                raise fail(f"item {i + 1}: expected a network name, got {describe(item)}")
            out[str(item)] = {}
        return out
    if isinstance(value, dict):
        return {str(k): ({} if v is None else v) for k, v in value.items()}
    raise fail(f"expected a list of network names or a mapping, got {describe(value)}")


class IpamPool(Model):
    area: ClassVar[str] = "ipam_pool"

    subnet: Str | None = None
    ip_range: Str | None = None
    gateway: Str | None = None
    aux_addresses: Annotated[dict[str, str], BeforeValidator(str_keys)] = \
        Field(default_factory=dict)

    @field_validator("subnet", "ip_range", mode="after")
    @classmethod
    def _cidr(cls, value: str | None) -> str | None:
        return _subnet(value)

    @field_validator("gateway", mode="after")
    @classmethod
    def _gw(cls, value: str | None) -> str | None:
        return _ip(value)

    def finish(self, data: dict[str, Any]) -> None:
        if self.gateway and self.subnet:
            import ipaddress

            net = ipaddress.ip_network(self.subnet, strict=False)
            if ipaddress.ip_address(self.gateway) not in net:
                raise fail(f"the gateway {self.gateway} is not in the subnet {self.subnet}")


class Ipam(Model):
    area: ClassVar[str] = "ipam"

    driver: Str | None = None
    config: list[IpamPool] = Field(default_factory=list)
    options: OptsMap = Field(default_factory=dict)


#: network drivers stackctl carries out (None: the default, bridge)
NETWORK_DRIVERS = (None, "bridge", "overlay")


class Network(TopLevel):
    """A top-level network."""

    area: ClassVar[str] = "network"
    extensible: ClassVar[bool] = True
    omit_false: ClassVar[frozenset[str]] = frozenset(
        {"internal", "attachable", "enable_ipv6", "external"})

    name: Str | None = None
    driver: Str | None = None
    driver_opts: OptsMap = Field(default_factory=dict)
    internal: Bool = False
    attachable: Bool = False
    enable_ipv6: Bool = False
    ipam: Ipam | None = None
    external: Bool = False
    labels: StrMap = Field(default_factory=dict)

    def finish(self, data: dict[str, Any]) -> None:
        self.refuse_when_external(data, ("driver", "driver_opts", "ipam", "internal", "attachable",
                                         "enable_ipv6", "labels"))

    @property
    def implemented(self) -> bool:
        """Whether stackctl can create this network (its driver is one it carries out);
        others are accepted by ``config`` with a warning and refused by ``up``."""
        return self.external or self.driver in NETWORK_DRIVERS


def null_as_empty(value: Any) -> Any:
    """``networks: {front:}`` declares ``front`` with all defaults."""
    if isinstance(value, dict):
        return {str(k): ({} if v is None else v) for k, v in value.items()}
    return value
