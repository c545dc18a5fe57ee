"""Service networks (list and map), network_mode, top-level networks."""

from __future__ import annotations

from spec_models_help import build, errors, service, stack, svc_text

from stackctl.spec.yamlpos import load_yaml

NETS = "networks:\n  front:\n  back:\n"


def test_list_and_map_forms():
    svc = service(svc_text("networks: [front, back]") + NETS)
    assert svc.networks["front"].dump() == {}
    svc = service(svc_text("""
        networks:
          front:
            aliases: [api, web2]
            ipv4_address: 172.20.0.5
          back:
        """) + NETS)
    assert svc.networks["front"].aliases == ["api", "web2"]
    assert svc.networks["front"].ipv4_address == "172.20.0.5"
    assert svc.networks["back"].aliases == []


def test_default_network_is_added():
    st = stack(svc_text("") + "  other:\n    image: x\n    network_mode: none\n")
    assert st.services["web"].networks.keys() == {"default"}
    assert st.networks["default"].name == "proj_default"
    assert st.services["other"].networks == {}


def test_undefined_network():
    assert errors(svc_text("networks: [nope]")) == [
        "stack.yml:4:16: services.web.networks[0]: undefined network nope "
        "(declare it under the top-level networks: key)"]


def test_bad_addresses():
    errs = errors(svc_text("networks:\n  front: {ipv4_address: '::1'}") + NETS)
    assert "expected an IPv4 address" in errs[0]


def test_network_mode():
    assert service(svc_text("network_mode: host")).network_mode == "host"
    errs = errors(svc_text("network_mode: host\nnetworks: [front]") + NETS)
    assert "network_mode and networks cannot be used together" in errs[0]
    errs = errors(svc_text("network_mode: service:nope"))
    assert "depends on undefined service nope" in errs[0]


def test_network_mode_container_is_accepted():
    _, _, warnings = build(svc_text("network_mode: container:abc"))
    assert not any("network_mode" in str(w) for w in warnings)
    assert service(svc_text("network_mode: container:abc")).network_mode == "container:abc"


def test_top_level_networks():
    st = stack(svc_text("networks: [a, b, c]") + """
networks:
  a:
    driver: overlay
    attachable: true
    internal: true
    enable_ipv6: true
    driver_opts: {mtu: 1400}
    labels: {tier: a}
    ipam:
      driver: default
      config:
        - subnet: 10.1.0.0/24
          gateway: 10.1.0.1
          ip_range: 10.1.0.128/25
  b:
    external: true
  c:
    external: {name: legacy}
""")
    a = st.networks["a"]
    assert (a.name, a.driver, a.attachable, a.internal, a.enable_ipv6) == (
        "proj_a", "overlay", True, True, True)
    assert a.driver_opts == {"mtu": "1400"}
    assert a.ipam.config[0].gateway == "10.1.0.1"
    assert st.networks["b"].name == "b"
    assert st.networks["c"].name == "legacy" and st.networks["c"].external


def test_invalid_top_level_networks():
    errs = errors("""
services: {}
networks:
  b: {ipam: {config: [{subnet: nope}]}}
  c: {ipam: {config: [{subnet: 10.0.0.0/24, gateway: 10.9.9.9}]}}
  d: {external: true, driver: bridge}
  e: {external: true, labels: {a: b}}
""")
    assert len(errs) == 4
    assert "CIDR" in errs[0]
    assert "is not in the subnet" in errs[1]
    assert 'an external network takes no "driver"' in errs[2]
    assert 'an external network takes no "labels"' in errs[3]


def test_unimplemented_network_driver_is_a_warning_for_config():
    # Compose accepts any driver (a plugin may provide it); stackctl warns, and `up` refuses
    from stackctl.spec.validate import not_runnable
    text = "services: {}\nnetworks:\n  a: {driver: macvlan}\n"
    st, _, warnings = build(text)
    assert [str(w) for w in warnings] == [
        "stack.yml:3:15: networks.a.driver: network driver macvlan is not supported by stackctl "
        "(bridge and overlay are); `stackctl up` refuses it"]
    problems = list(not_runnable(st, load_yaml(text, "stack.yml")))
    assert [str(p) for p in problems] == [
        "stack.yml:3:15: networks.a.driver: network driver macvlan is not supported by stackctl "
        "(bridge and overlay are)"]
