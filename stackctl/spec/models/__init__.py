"""Pydantic models of a stack file, normalized to Compose's long syntax.

One module per area: :mod:`.base` (base model, scalar types), :mod:`.ports`, :mod:`.mounts`,
:mod:`.network`, :mod:`.deploy`, :mod:`.service_parts`, :mod:`.service`, :mod:`.resources`
(top-level volumes, secrets, configs), :mod:`.stack`; :mod:`.support` lists the keys accepted
but not carried out yet.
"""

from stackctl.spec.models.deploy import (
    Deploy,
    Placement,
    Resources,
    ResourceSpec,
    RestartPolicy,
    RollbackConfig,
    UpdateConfig,
)
from stackctl.spec.models.mounts import Mount
from stackctl.spec.models.network import Ipam, IpamPool, Network, ServiceNetwork
from stackctl.spec.models.ports import Port
from stackctl.spec.models.resources import Config, Secret, Volume
from stackctl.spec.models.service import Service
from stackctl.spec.models.service_parts import (
    Build,
    Dependency,
    EnvFile,
    FileRef,
    Healthcheck,
    Logging,
    Ulimit,
)
from stackctl.spec.models.stack import Stack

__all__ = [
    "Build", "Config", "Dependency", "Deploy", "EnvFile", "FileRef", "Healthcheck", "Ipam",
    "IpamPool", "Logging", "Mount", "Network", "Placement", "Port", "Resources", "ResourceSpec",
    "RestartPolicy", "RollbackConfig", "Secret", "Service", "ServiceNetwork", "Stack",
    "Ulimit", "UpdateConfig", "Volume",
]
