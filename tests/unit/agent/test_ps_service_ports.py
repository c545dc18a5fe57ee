"""PORTS of a stack's containers: a service's published ports (service ports, DNAT'd over its
replicas) are shown on each running replica, as `docker compose ps` shows them."""

from __future__ import annotations

from stackctl.agent.nodeops import container_json
from stackctl.humanize import ports_column
from stackctl.net.model import PortBinding
from stackctl.runtime.records import Record
from stackctl.runtime.spec import ContainerSpec, ContainerState


def _rec(service: str, status: str = "running", settings: dict | None = None, **labels: str) -> Record:
    spec = ContainerSpec(id="a" * 64, name=f"shop-{service}-1", image="bb", image_id="sha256:" + "b" * 64,
                         rootfs_layers=[], argv=["httpd"],
                         labels={"com.stackctl.stack": "shop", "com.stackctl.service": service,
                                 "com.stackctl.slot": "1", **labels})
    meta = {"NetworkSettings": settings} if settings is not None else {}
    return Record(spec, meta, ContainerState(status=status, pid=1))


WEB = {"shop_web": [PortBinding("", 8080, 80, "tcp"), PortBinding("127.0.0.1", 5353, 53, "udp")]}


def test_ports_column_adds_service_bindings():
    settings = {"Ports": {"80/tcp": None, "443/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8443"}]}}
    assert ports_column(settings, WEB["shop_web"]) == \
        "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp, 0.0.0.0:8443->443/tcp"
    assert ports_column(None, WEB["shop_web"]) == "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp"
    assert ports_column(settings) == "80/tcp, 0.0.0.0:8443->443/tcp"  # unchanged without extra


def test_container_json_shows_the_service_ports_of_running_replicas():
    settings = {"Networks": {"shop_default": {}}, "Ports": {}}
    assert container_json(_rec("web", settings=settings), service_ports=WEB)["ports"] == \
        "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp"
    assert container_json(_rec("web"), service_ports=WEB)["ports"] == \
        "127.0.0.1:5353->53/udp, 0.0.0.0:8080->80/tcp"
    assert container_json(_rec("db", settings=settings), service_ports=WEB)["ports"] == ""
    assert container_json(_rec("web", status="exited"), service_ports=WEB)["ports"] == ""
    assert container_json(_rec("web", **{"com.stackctl.oneoff": "true"}), service_ports=WEB)["ports"] == ""
    assert container_json(_rec("web", settings=settings))["ports"] == ""
