"""Merging files by Compose's override rules."""

from __future__ import annotations

import pytest

from stackctl.errors import Pos, SpecError
from stackctl.spec.merge import merge_service, merge_trees
from stackctl.spec.yamlpos import OverrideDict, OverrideList, Reset, load_yaml, strip_positions


def merged(*texts: str) -> dict:
    trees = [load_yaml(t, f"f{i}.yml") for i, t in enumerate(texts)]
    return merge_trees(trees)


def web(*texts: str) -> dict:
    return strip_positions(merged(*(f"services:\n  web:\n{_indent(t)}" for t in texts)))[
        "services"]["web"]


def _indent(text: str) -> str:
    return "".join(f"    {line}\n" for line in text.strip("\n").splitlines())


def test_mappings_merge_and_scalars_are_replaced() -> None:
    assert web("image: a\nhostname: h\ndeploy: {replicas: 1, mode: replicated}",
               "image: b\ndeploy: {replicas: 3}") == {
        "image": "b", "hostname": "h", "deploy": {"replicas": 3, "mode": "replicated"}}


def test_new_services_and_top_level_sections_are_added() -> None:
    out = strip_positions(merged("services: {a: {image: x}}\nvolumes: {v: {}}",
                                 "services: {b: {image: y}}\nnetworks: {n: {}}"))
    assert out == {"services": {"a": {"image": "x"}, "b": {"image": "y"}},
                   "volumes": {"v": {}}, "networks": {"n": {}}}


@pytest.mark.parametrize("key", ["command", "entrypoint"])
def test_commands_are_replaced_not_appended(key: str) -> None:
    assert web(f"{key}: [echo, foo]", f"{key}: [echo, bar]") == {key: ["echo", "bar"]}
    assert web(f"{key}: [echo, foo]", f"{key}: echo bar") == {key: "echo bar"}


def test_healthcheck_test_is_replaced_and_the_rest_merges() -> None:
    assert web("healthcheck: {test: [CMD, a], interval: 5s}",
               "healthcheck: {test: [CMD, b], retries: 3}") == {
        "healthcheck": {"test": ["CMD", "b"], "interval": "5s", "retries": 3}}


def test_plain_sequences_are_appended() -> None:
    assert web("security_opt: [a]", "security_opt: [a, b]") == {
        "security_opt": ["a", "a", "b"]}


@pytest.mark.parametrize("key", ["dns", "dns_search", "expose", "external_links", "tmpfs",
                                 "cap_add", "profiles", "links"])
def test_unique_sequences_keep_each_value_once(key: str) -> None:
    assert web(f"{key}: [a, b]", f"{key}: [b, c]") == {key: ["a", "b", "c"]}


def test_tmpfs_string_and_list() -> None:
    assert web("tmpfs: /run", "tmpfs: [/run, /tmp]") == {"tmpfs": ["/run", "/tmp"]}


def test_ports_are_unique_by_address_port_and_protocol() -> None:
    assert web('ports: ["80:80", "443:443", "53:53/udp", 9000]',
               'ports: ["443:443", "53:53", {target: 80, published: "80"}, "9000"]') == {
        "ports": [{"target": 80, "published": "80"}, "443:443", "53:53/udp", "9000",
                  "53:53"]}


def test_volumes_and_devices_are_merged_by_target() -> None:
    assert web("volumes: [./a:/data, logs:/logs, /anon]",
               "volumes: [{type: bind, source: ./b, target: /data}, /anon, c:/c:ro]") == {
        "volumes": [{"type": "bind", "source": "./b", "target": "/data"}, "logs:/logs",
                    "/anon", "c:/c:ro"]}
    assert web("devices: [/dev/a:/dev/x]", "devices: [/dev/b:/dev/x:rwm, /dev/c]") == {
        "devices": ["/dev/b:/dev/x:rwm", "/dev/c"]}


def test_secrets_and_configs_by_target() -> None:
    assert web("secrets: [s1, {source: s2, target: /etc/s2}]\nconfigs: [c1]",
               "secrets: [{source: s1, mode: 0400}, {source: other, target: /etc/s2}]\n"
               "configs: [{source: c1, target: /c1}, c2]") == {
        "secrets": [{"source": "s1", "mode": 0o400}, {"source": "other", "target": "/etc/s2"}],
        "configs": [{"source": "c1", "target": "/c1"}, "c2"]}


@pytest.mark.parametrize("key", ["environment", "labels", "sysctls"])
def test_key_values_merge_as_mappings_across_syntaxes(key: str) -> None:
    assert web(f"{key}: [A=1, B=2, C]", f"{key}: {{B: 3, D: 4}}") == {
        key: {"A": "1", "B": 3, "C": None, "D": 4}}
    assert web(f"{key}: {{A: 1, B: 2}}", f"{key}: [B=x=y, E]") == {
        key: {"A": 1, "B": "x=y", "E": None}}
    assert web(f"{key}: [A=1]", f"{key}: [A=2]") == {key: {"A": "2"}}


def test_build_args_and_string_build() -> None:
    assert web("build: ./app", "build: {args: [V=2], target: prod}") == {
        "build": {"context": "./app", "args": ["V=2"], "target": "prod"}}
    assert web("build: {context: ., args: {V: 1, W: 1}}", "build: {args: [V=2]}") == {
        "build": {"context": ".", "args": {"V": "2", "W": 1}}}


def test_extra_hosts_keep_every_address() -> None:
    assert web('extra_hosts: ["a:1.1.1.1", "b=2.2.2.2"]',
               "extra_hosts: {a: 1.1.1.1, c: [3.3.3.3, '::1']}") == {
        "extra_hosts": ["a=1.1.1.1", "b=2.2.2.2", "c=3.3.3.3", "c=::1"]}


def test_ulimits_entries_are_replaced() -> None:
    assert web("ulimits: {nofile: {soft: 1, hard: 2}, nproc: 10}",
               "ulimits: {nofile: {soft: 5}}") == {
        "ulimits": {"nofile": {"soft": 5}, "nproc": 10}}


def test_depends_on_and_networks_list_or_mapping() -> None:
    assert web("depends_on: [db]", "depends_on: [db, cache]") == {"depends_on": ["db", "cache"]}
    assert web("depends_on: [db]", "depends_on: {cache: {condition: service_healthy}}") == {
        "depends_on": {"db": {"condition": "service_started"},
                       "cache": {"condition": "service_healthy"}}}
    assert web("networks: {front: {aliases: [w]}}", "networks: [front, back]") == {
        "networks": {"front": {"aliases": ["w"]}, "back": None}}


def test_logging_merges_only_for_the_same_driver() -> None:
    assert web("logging: {driver: json-file, options: {max-size: 1m}}",
               "logging: {options: {max-file: '3'}}") == {
        "logging": {"driver": "json-file", "options": {"max-size": "1m", "max-file": "3"}}}
    assert web("logging: {driver: json-file, options: {max-size: 1m}}",
               "logging: {driver: syslog}") == {"logging": {"driver": "syslog"}}


def test_extension_fields_are_replaced_whole() -> None:
    out = strip_positions(merged("x-common: {a: 1, b: 2}", "x-common: {a: 3}"))
    assert out == {"x-common": {"a": 3}}


def test_null_leaves_a_mapping_or_sequence_as_it_was() -> None:
    assert web("networks: [front]\nports: ['80:80']", "networks: null\nports:") == {
        "networks": ["front"], "ports": ["80:80"]}


def test_reset_and_override_tags() -> None:
    assert web("ports: ['80:80']\nenvironment: {A: 1, B: 2}\nimage: x",
               "ports: !reset []\nenvironment: !override {C: 3}\nimage: !reset null") == {
        "environment": {"C": 3}}
    assert web("dns: [a]", "dns: !override [b]") == {"dns": ["b"]}


def test_tags_in_a_single_file_are_resolved() -> None:
    out = merged("services:\n  web:\n    image: x\n    ports: !reset []\n"
                 "    dns: !override [a]\n")
    assert strip_positions(out) == {"services": {"web": {"image": "x", "dns": ["a"]}}}
    assert type(out["services"]["web"]["dns"]) is not OverrideList


def test_yaml_loader_marks_the_tags() -> None:
    tree = load_yaml("a: !reset\nb: !override {x: 1}\nc: !override [1]\nd: !override 7\n",
                     "f.yml")
    assert isinstance(tree["a"], Reset)
    assert isinstance(tree["b"], OverrideDict) and tree["b"] == {"x": 1}
    assert isinstance(tree["c"], OverrideList) and tree["c"] == [1]
    assert tree["d"] == 7


def test_positions_follow_the_winning_value() -> None:
    out = merged("services:\n  web:\n    image: a\n    hostname: h\n    ports: ['1:1']\n",
                 "services:\n  web:\n    image: b\n    ports: ['2:2']\n")
    svc = out["services"]["web"]
    assert svc.val_pos["image"] == Pos("f1.yml", 3, 12)
    assert svc.val_pos["hostname"] == Pos("f0.yml", 4, 15)
    assert svc["ports"].item_pos == [Pos("f0.yml", 5, 13), Pos("f1.yml", 4, 13)]


def test_inputs_are_not_changed() -> None:
    base = load_yaml("services: {web: {ports: ['1:1'], environment: [A=1]}}", "a.yml")
    over = load_yaml("services: {web: {ports: ['2:2'], environment: {B: 2}}}", "b.yml")
    before = (strip_positions(base), strip_positions(over))
    merge_trees([base, over])
    assert (strip_positions(base), strip_positions(over)) == before


def test_a_mapping_over_a_sequence_is_an_error_naming_both_places() -> None:
    with pytest.raises(SpecError) as info:
        merged("services:\n  web:\n    deploy: {replicas: 1}\n    cap_add: [A]\n",
               "services:\n  web:\n    deploy: [1]\n    group_add: x\n")
    assert [str(i) for i in info.value.issues] == [
        "f1.yml:3:13: services.web.deploy: cannot merge a sequence into a mapping (the earlier "
        "value is at f0.yml:3:13); write the same form in both files, or tag the later value "
        "!override"]


def test_merge_service_for_extends() -> None:
    base = load_yaml("image: x\nenvironment: {A: 1}\nports: ['1:1']", "base.yml")
    local = load_yaml("environment: [B=2]\nports: ['1:1', '2:2']", "local.yml")
    assert strip_positions(merge_service(base, local, "web")) == {
        "image": "x", "environment": {"A": 1, "B": "2"}, "ports": ["1:1", "2:2"]}
