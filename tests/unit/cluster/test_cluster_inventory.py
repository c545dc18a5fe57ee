"""The inventory file: parsing, every error located, edits, and saving that keeps what users
wrote (stackctl/cluster/inventory.py). Pure: only tmp_path files."""

from __future__ import annotations

import pytest

from stackctl.cluster import inventory as I
from stackctl.errors import NotFoundError, StackctlError, UsageError
from stackctl.transport.target import SSHTarget

GOOD = """\
# my cluster
nodes:
  # the manager
  - name: n0
    url: ssh://root@10.0.0.1
    labels: {zone: a}   # zone a

  - name: n1
    url: ssh://deploy@10.0.0.2:2222
    availability: drain
    identity: keys/id_ed25519
    x-note: keep me
x-owner: ops
"""


def errors(text: str) -> list[str]:
    with pytest.raises(I.InventoryError) as ei:
        I.parse_inventory(text, "nodes.yml")
    return ei.value.lines()


# -- parsing ---------------------------------------------------------------------------------


def test_parse_fields_and_implicit_manager():
    inv = I.parse_inventory(GOOD, "/c/nodes.yml")
    n0, n1 = inv.nodes
    assert inv.manager is n0 and n0.role is None  # the first node manages when none is named
    assert inv.role_of(n0) == "manager" and inv.role_of(n1) == "worker"
    assert n0.labels == {"zone": "a"} and n0.availability == "active"
    assert n1.address == SSHTarget(host="10.0.0.2", user="deploy", port=2222)
    assert n1.availability == "drain" and n1.extra == {"x-note": "keep me"}
    assert inv.extra == {"x-owner": "ops"}
    assert inv.resolve(n1.identity) == "/c/keys/id_ed25519"


def test_named_manager_wins_over_order():
    inv = I.parse_inventory("nodes:\n- {name: a, url: 'ssh://a'}\n- {name: b, url: 'ssh://b', role: manager}\n", "f")
    assert inv.manager.name == "b"


def test_missing_id_is_derived_from_the_name_and_stable():
    a = I.parse_inventory(GOOD, "nodes.yml").nodes[0].id
    b = I.parse_inventory(GOOD.replace("10.0.0.1", "10.9.9.9"), "other.yml").nodes[0].id
    assert a == b == I.derived_node_id("n0")
    assert len(a) == I.ID_LENGTH and a.isalnum() and a.islower()


def test_new_ids_have_dockers_shape():
    ids = {I.new_node_id() for _ in range(50)}
    assert len(ids) == 50 and all(len(i) == 25 and i.isalnum() for i in ids)
    assert I.new_node_id(0) == "0" * 25


def test_labels_as_a_list_and_scalars_become_strings():
    inv = I.parse_inventory("nodes:\n- name: a\n  url: local\n  labels: [zone=b, ssd]\n"
                            "- name: c\n  url: ssh://c\n  labels: {rack: 3, gpu: true}\n", "f")
    assert inv.nodes[0].labels == {"zone": "b", "ssd": ""}
    assert inv.nodes[0].is_local and inv.nodes[0].address is None
    assert inv.nodes[1].labels == {"rack": "3", "gpu": "true"}


@pytest.mark.parametrize("url,addr", [
    ("ssh://host", SSHTarget("host")),
    ("ssh://root@h.example.com:22", SSHTarget("h.example.com", "root", 22)),
    ("ssh://root@[fd00::2]:2222", SSHTarget("fd00::2", "root", 2222)),
    ("ssh://[fd00::2]", SSHTarget("fd00::2")),
])
def test_parse_url_good(url, addr):
    assert I.parse_url(url) == addr
    assert I.parse_url(addr.url) == addr


@pytest.mark.parametrize("url,why", [
    ("root@10.0.0.2", 'write "ssh://root@10.0.0.2"'),
    ("http://h", "it must start with ssh://"),
    ("ssh://h/path", "a path, query or fragment is not allowed"),
    ("ssh://u:pw@h", "a password in the URL is not supported"),
    ("ssh://h:0", "port '0' is not a number from 1 to 65535"),
    ("ssh://h:x", "port 'x' is not a number"),
    ("ssh://[nothex]", "is not an IPv6 address"),
    ("ssh://", "the host is missing"),
    ("ssh://bad host", "'bad host' is not a valid host name or address"),
])
def test_parse_url_bad(url, why):
    with pytest.raises(ValueError) as ei:
        I.parse_url(url)
    assert why in str(ei.value)


# -- every error, located --------------------------------------------------------------------


def test_bad_url_is_located():
    assert errors("nodes:\n  - name: n0\n    url: root@x\n") == [
        'nodes.yml:3:10: nodes[0].url: invalid URL "root@x": expected ssh://[user@]host[:port] '
        'or `local` (write "ssh://root@x")']


def test_duplicate_name_is_located_with_the_first():
    text = "nodes:\n  - name: n1\n    url: ssh://a\n  - name: n1\n    url: ssh://b\n"
    assert errors(text) == ['nodes.yml:4:11: nodes[1].name: duplicate node name "n1" (first at line 2)']


def test_duplicate_name_reported_even_when_that_node_has_other_errors():
    text = "nodes:\n  - name: n1\n    url: ssh://a\n  - name: n1\n    url: nope\n"
    out = errors(text)
    assert any("nodes[1].name: duplicate node name" in line for line in out)
    assert any("nodes[1].url: invalid URL" in line for line in out)


def test_two_managers():
    text = ("nodes:\n  - name: a\n    url: ssh://a\n    role: manager\n"
            "  - name: b\n    url: ssh://b\n    role: manager\n")
    assert errors(text) == ['nodes.yml:7:11: nodes[1].role: a second manager: "a" (line 4) is the '
                            "manager already; one manager for now"]


def test_same_address_twice():
    text = "nodes:\n- {name: a, url: 'ssh://root@h:22'}\n- {name: b, url: 'ssh://root@h:22'}\n"
    assert errors(text) == ['nodes.yml:3:18: nodes[1].url: ssh://root@h:22 is also node "a" (line 2)']


def test_every_error_at_once():
    text = """\
nodes:
  - name: -bad
    url: ssh://a
    role: boss
    availability: sleeping
    labls: {}
    labels: [9x=1, "=v"]
    identity: ""
    id: NOT-AN-ID
  - url: ssh://b
  - just a string
bogus: 1
"""
    assert errors(text) == [
        'nodes.yml:12:1: bogus: unknown key (known: nodes; or x-*)',
        'nodes.yml:6:5: nodes[0].labls: unknown key; did you mean "labels"?',
        'nodes.yml:2:11: nodes[0].name: invalid node name "-bad": letters, digits, _, . and -, '
        "starting with a letter or digit, at most 63",
        'nodes.yml:9:9: nodes[0].id: invalid node id "NOT-AN-ID": lowercase letters and digits',
        'nodes.yml:4:11: nodes[0].role: expected manager or worker, got "boss"',
        'nodes.yml:5:19: nodes[0].availability: expected active, pause or drain, got "sleeping"',
        'nodes.yml:7:20: nodes[0].labels[1]: invalid label "=v": expected KEY=VALUE',
        'nodes.yml:8:15: nodes[0].identity: expected a file path, got ""',
        'nodes.yml:10:5: nodes[1]: missing "name"',
        'nodes.yml:11:5: nodes[2]: expected a mapping with name and url',
    ]


def test_nodes_not_a_list_and_yaml_syntax():
    assert errors("nodes: 3\n") == ["nodes.yml:1:8: nodes: expected a list of nodes"]
    assert errors("nodes:\n  - name: [\n")[0].startswith("nodes.yml:")


def test_empty_file_is_an_empty_inventory():
    inv = I.parse_inventory("", "f")
    assert inv.nodes == [] and inv.manager is None


# -- edits -----------------------------------------------------------------------------------


def test_lookup_by_name_id_and_prefix():
    inv = I.parse_inventory(GOOD, "nodes.yml")
    n1 = inv.nodes[1]
    assert inv.get("n1") is n1 and inv.get(n1.id) is n1 and inv.get(n1.id[:6]) is n1
    with pytest.raises(NotFoundError, match='no node "zz" in nodes.yml \\(nodes: n0, n1\\)'):
        inv.get("zz")


def test_ambiguous_prefix():
    inv = I.Inventory(path=None, nodes=[I.Node("a", "ssh://a", id="ab1"), I.Node("b", "ssh://b", id="ab2")])
    with pytest.raises(UsageError, match="ambiguous"):
        inv.get("ab")


def test_first_added_node_is_written_as_manager_and_second_manager_refused():
    inv = I.Inventory(path=None)
    a = inv.add(I.Node("a", "ssh://a"))
    assert a.role == "manager"
    b = inv.add(I.Node("b", "ssh://b"))
    assert b.role is None and inv.role_of(b) == "worker"
    with pytest.raises(StackctlError, match='"a" is the manager already'):
        inv.add(I.Node("c", "ssh://c", role="manager"))
    with pytest.raises(StackctlError, match='already in the inventory as "a"'):
        inv.add(I.Node("d", "ssh://a"))
    with pytest.raises(StackctlError, match='a node named "b"'):
        inv.add(I.Node("b", "ssh://x"))


def test_promote_moves_the_single_manager_role():
    inv = I.parse_inventory(GOOD, "nodes.yml")
    new, old = inv.promote("n1")
    assert new.name == "n1" and old.name == "n0"
    assert inv.manager.name == "n1" and inv.nodes[0].role == "worker"
    again, none = inv.promote("n1")
    assert again is new and none is None


def test_remove_manager_needs_force_while_others_remain():
    inv = I.parse_inventory(GOOD, "nodes.yml")
    with pytest.raises(StackctlError, match='"n0" is the manager'):
        inv.remove("n0")
    inv.remove("n0", force=True)
    assert inv.manager.name == "n1"


# -- saving keeps what users wrote ---------------------------------------------------------


def test_round_trip_unchanged_is_byte_identical(tmp_path):
    p = tmp_path / "nodes.yml"
    p.write_text(GOOD)
    inv = I.load_inventory(str(p))
    I.save_inventory(inv)
    assert p.read_text() == GOOD


def test_a_change_rewrites_only_its_node(tmp_path):
    p = tmp_path / "nodes.yml"
    p.write_text(GOOD)
    inv = I.load_inventory(str(p))
    inv.get("n1").labels["zone"] = "b"
    I.save_inventory(inv)
    text = p.read_text()
    # n0's block, its comments and the file's header are untouched
    assert text.startswith(GOOD.split("  - name: n1")[0])
    assert "x-note: keep me" in text and text.endswith("x-owner: ops\n")
    again = I.load_inventory(str(p))
    assert again.get("n1").labels == {"zone": "b"} and again.get("n1").id == inv.get("n1").id
    assert again.get("n1").availability == "drain" and again.get("n1").identity == "keys/id_ed25519"


def test_add_and_remove_keep_the_rest(tmp_path):
    p = tmp_path / "nodes.yml"
    p.write_text(GOOD)
    inv = I.load_inventory(str(p))
    inv.add(I.Node("n2", "ssh://root@[fd00::3]", labels={"zone": "c"}))
    inv.remove("n1")
    I.save_inventory(inv)
    text = p.read_text()
    assert "# the manager" in text and "labels: {zone: a}   # zone a" in text and "n1" not in text
    again = I.load_inventory(str(p))
    assert [n.name for n in again.nodes] == ["n0", "n2"]
    assert again.get("n2").address == SSHTarget("fd00::3", "root")
    assert again.extra == {"x-owner": "ops"}
    # and a second save of what was just saved changes nothing
    I.save_inventory(again)
    assert p.read_text() == text


def test_new_file_and_flow_style_files_are_written_anew(tmp_path):
    p = tmp_path / "sub" / "nodes.yml"
    inv = I.Inventory(path=str(p))
    inv.add(I.Node("m", "local"))
    I.save_inventory(inv)
    again = I.load_inventory(str(p))
    assert again.manager.name == "m" and again.manager.is_local and again.manager.role == "manager"
    q = tmp_path / "flow.yml"
    q.write_text("nodes: [{name: a, url: 'ssh://a'}]\n")
    inv = I.load_inventory(str(q))
    inv.get("a").availability = "pause"
    I.save_inventory(inv)
    assert I.load_inventory(str(q)).get("a").availability == "pause"


def test_save_of_a_node_with_every_field_reads_back(tmp_path):
    p = tmp_path / "nodes.yml"
    inv = I.Inventory(path=str(p))
    inv.add(I.Node("a-1", "ssh://u@h:2200", labels={"k": "true", "n": "007", "e": "", "s": "a: b"},
                   identity="~/.ssh/k", known_hosts="./kh", availability="drain"))
    I.save_inventory(inv)
    got = I.load_inventory(str(p)).nodes[0]
    want = inv.nodes[0]
    assert (got.name, got.url, got.id, got.labels, got.identity, got.known_hosts, got.availability) == (
        want.name, want.url, want.id, want.labels, want.identity, want.known_hosts, want.availability)


# -- finding the file --------------------------------------------------------------------------


def test_find_inventory_order(tmp_path):
    stack_dir = tmp_path / "app"
    stack_dir.mkdir()
    (stack_dir / "nodes.yml").write_text("nodes: []\n")
    stack = str(stack_dir / "stack.yml")
    assert I.find_inventory(stack, None, {}) == str(stack_dir / "nodes.yml")
    assert I.find_inventory(None, None, {}, cwd=str(tmp_path)) is None  # no inventory: local node
    assert I.find_inventory(None, None, {}, cwd=str(stack_dir)) == str(stack_dir / "nodes.yml")
    other = tmp_path / "other.yml"
    other.write_text("nodes: []\n")
    assert I.find_inventory(stack, None, {"STACKCTL_NODES": str(other)}) == str(other)
    with pytest.raises(NotFoundError, match="named by --nodes"):
        I.find_inventory(stack, str(tmp_path / "missing.yml"), {})
    with pytest.raises(NotFoundError, match="named by \\$STACKCTL_NODES"):
        I.find_inventory(stack, None, {"STACKCTL_NODES": str(tmp_path / "missing.yml")})


def test_parse_label():
    assert I.parse_label("zone=a") == ("zone", "a")
    assert I.parse_label("ssd") == ("ssd", "")
    assert I.parse_label("a=b=c") == ("a", "b=c")
    with pytest.raises(UsageError):
        I.parse_label("=x")


def test_comment_lines_above_a_node_go_with_it(tmp_path):
    text = ("nodes:\n  - name: a\n    url: ssh://a\n\n  # b: the big one\n  - name: b\n"
            "    url: ssh://b\n  - name: c\n    url: ssh://c\n")
    p = tmp_path / "nodes.yml"
    p.write_text(text)
    inv = I.load_inventory(str(p))
    inv.get("c").availability = "pause"
    I.save_inventory(inv)
    assert "  # b: the big one\n  - name: b\n" in p.read_text()
    inv.remove("b")
    I.save_inventory(inv)
    assert "big one" not in p.read_text()
    assert p.read_text().startswith("nodes:\n  - name: a\n    url: ssh://a\n\n  - name: c\n")
