"""A networking state for the pure tests: two networks, a stack service with replicas."""

from stackctl.net.model import Endpoint, NetState, Network, PortBinding, Sandbox

FRONT = "f" * 64
BACK = "b" * 64


def cid(n: int) -> str:
    return f"{n:064x}"


def sample_state() -> NetState:
    st = NetState()
    st.networks[FRONT] = Network(id=FRONT, name="front", subnet="10.89.0.0/24", gateway="10.89.0.1")
    st.networks[BACK] = Network(id=BACK, name="back", subnet="10.89.1.0/24", gateway="10.89.1.1",
                                internal=True)

    def ep(net, c, addr, names, service="", mode="vip", healthy=True):
        st.endpoints.setdefault(net, {})[cid(c)] = Endpoint(
            network_id=net, container_id=cid(c), address=addr, names=names, service=service,
            endpoint_mode=mode, healthy=healthy)

    # web: 3 replicas (one unhealthy) on front with a VIP; db: dnsrr on back; proxy on both
    ep(FRONT, 1, "10.89.0.2", ["stack-web-1", "web.1"], "web")
    ep(FRONT, 2, "10.89.0.3", ["stack-web-2"], "web")
    ep(FRONT, 3, "10.89.0.4", ["stack-web-3"], "web", healthy=False)
    ep(BACK, 4, "10.89.1.2", ["stack-db-1"], "db", "dnsrr")
    ep(BACK, 5, "10.89.1.3", ["stack-db-2"], "db", "dnsrr")
    ep(FRONT, 6, "10.89.0.5", ["proxy", "gateway-alias"])
    ep(BACK, 6, "10.89.1.4", ["proxy"])
    st.vips[FRONT] = {"web": "10.89.0.254"}
    for c, nets in {1: [FRONT], 2: [FRONT], 3: [FRONT], 4: [BACK], 5: [BACK], 6: [FRONT, BACK]}.items():
        st.sandboxes[cid(c)] = Sandbox(container_id=cid(c), netns=f"/run/x/netns/{cid(c)}",
                                       networks=nets)
    st.sandboxes[cid(6)].ports = [PortBinding("", 8080, 80, "tcp"),
                                  PortBinding("127.0.0.1", 5353, 53, "udp")]
    st.sandboxes[cid(4)].dns = ["192.0.2.53"]
    return st
