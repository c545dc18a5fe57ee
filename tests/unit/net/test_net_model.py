import pytest

from stackctl.net import gc
from stackctl.net.model import NetState, NetworkError, check_name, mac_for, veth_names

from netstate import FRONT, cid, sample_state  # noqa: E402


def test_state_json_roundtrip():
    st = sample_state()
    st.ip_forward_was = "0"
    again = NetState.from_json(st.to_json())
    assert again.to_json() == st.to_json()
    assert again.find("front").id == FRONT
    assert again.find(FRONT[:6]).name == "front"
    assert again.find("nope") is None


def test_kernel_names_fit_ifnamsiz():
    host, peer = veth_names(FRONT, cid(1))
    assert host.startswith("stkv") and peer.startswith("stkp")
    assert len(host) <= 15 and len(peer) <= 15 and host[4:] == peer[4:]


def test_mac_is_derived_from_address():
    assert mac_for("10.89.0.2") == "02:42:0a:59:00:02"


@pytest.mark.parametrize("name", ["host", "none", "-x", "a b", ""])
def test_bad_names(name):
    with pytest.raises(NetworkError):
        check_name(name)


def test_stale_links_only_ours_and_unexplained():
    st = sample_state()
    ep_if = st.endpoints[FRONT][cid(1)].host_ifname
    links = [
        ("stk-ffffffff", "bridge", "stackctl T network front"),  # explained
        (ep_if, "veth", "stackctl T endpoint x front"),  # explained
        ("stk-deadbeef", "bridge", "stackctl T network gone"),  # ours, stale
        ("stkv0000000000", "veth", "stackctl T endpoint y gone"),  # ours, stale
        ("stk-cafecafe", "bridge", "stackctl OTHER network theirs"),  # another node's
        ("docker0", "bridge", ""),
    ]
    assert gc.stale_links(st, "T", links) == ["stk-deadbeef", "stkv0000000000"]
