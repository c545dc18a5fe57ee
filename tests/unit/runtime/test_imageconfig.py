"""How image config and user options combine, with the cases of Docker's documentation."""

import pytest

from stackctl.errors import UsageError
from stackctl.runtime import imageconfig as ic
from stackctl.runtime.imageconfig import RunOptions, build_plan, combine_command
from stackctl.runtime.spec import Resources

CID = "0123456789ab" + "c" * 52


def plan(opts, config=None, **kw):
    return build_plan(opts, image_id="sha256:" + "f" * 64, image_config=config or {}, layer_dirs=["/l1", "/l2"],
                      container_id=CID, name="web", **kw)


# (image ENTRYPOINT, image CMD, --entrypoint, command) -> (entrypoint, cmd)
CASES = [
    (None, ["sh"], None, None, [], ["sh"]),
    (None, ["sh"], None, ["echo", "hi"], [], ["echo", "hi"]),
    (["/ep"], ["a"], None, None, ["/ep"], ["a"]),
    (["/ep"], ["a"], None, ["b"], ["/ep"], ["b"]),
    # --entrypoint resets the image's CMD
    (["/ep"], ["a"], ["/other"], None, ["/other"], []),
    (None, ["a"], ["/other"], ["x"], ["/other"], ["x"]),
    # --entrypoint "" clears the entrypoint; the image CMD is reset too
    (["/ep"], ["a"], [""], ["ls"], [], ["ls"]),
    # shell form as the image stores it
    (["/bin/sh", "-c", "exec app"], None, None, None, ["/bin/sh", "-c", "exec app"], []),
    (None, ["/bin/sh", "-c", "echo $HOME"], None, None, [], ["/bin/sh", "-c", "echo $HOME"]),
]


@pytest.mark.parametrize("img_ep,img_cmd,ep,cmd,want_ep,want_cmd", CASES)
def test_entrypoint_cmd_table(img_ep, img_cmd, ep, cmd, want_ep, want_cmd):
    got = combine_command({"Entrypoint": img_ep, "Cmd": img_cmd}, RunOptions("img", command=cmd, entrypoint=ep))
    assert got == (want_ep, want_cmd)


def test_no_command_is_an_error():
    with pytest.raises(UsageError, match="no command specified"):
        plan(RunOptions("img", entrypoint=[""]), {"Cmd": ["sh"]})


def test_argv_path_and_inspect_config():
    p = plan(RunOptions("img", command=["-c", "x"]), {"Entrypoint": ["/bin/sh"], "Cmd": ["-l"]})
    assert p.spec.argv == ["/bin/sh", "-c", "x"]
    assert p.config["Entrypoint"] == ["/bin/sh"] and p.config["Cmd"] == ["-c", "x"]


def test_env_merge_order_and_pass_through():
    opts = RunOptions("img", command=["true"], env=["A=cli", "FROMHOST", "MISSING"],
                      env_file_lines=["A=file", "B=file"], tty=True)
    p = plan(opts, {"Env": ["PATH=/img/bin", "B=image", "C=image"]}, environ={"FROMHOST": "h"})
    # user variables first (-e after --env-file), then image ones not overridden
    assert p.config["Env"] == ["A=cli", "B=file", "FROMHOST=h", "PATH=/img/bin", "C=image"]
    env = p.spec.env
    assert env[0] == "PATH=/img/bin"  # replaced in place
    assert env[1] == f"HOSTNAME={CID[:12]}"
    assert "TERM=xterm" in env and not any(e.startswith("MISSING") for e in env)


def test_default_path_when_nobody_sets_it():
    p = plan(RunOptions("img", command=["true"]))
    assert p.spec.env[0] == "PATH=" + ic.DEFAULT_PATH
    assert "TERM=xterm" not in p.spec.env


def test_env_file_parsing():
    text = "# comment\n\nA=1\n  B = 2\nC\nD=with spaces  \n"
    with pytest.raises(UsageError, match="whitespaces"):
        ic.parse_env_file(text, "f.env")
    assert ic.parse_env_file("# c\nA=1\nC\nD= x \n") == ["A=1", "C", "D= x "]


def test_workdir_user_stop_signal_labels_hostname():
    cfg = {"WorkingDir": "/app", "User": "nobody", "StopSignal": "SIGQUIT", "Labels": {"a": "1", "b": "1"}}
    p = plan(RunOptions("img", command=["x"], labels={"b": "2"}), cfg)
    s = p.spec
    assert (s.cwd, s.user, s.stop_signal, s.labels, s.hostname) == ("/app", "nobody", "SIGQUIT", {"a": "1", "b": "2"}, CID[:12])
    p = plan(RunOptions("img", command=["x"], workdir="/w", user="0:0", stop_signal="9", hostname="h1"), cfg)
    assert (p.spec.cwd, p.spec.user, p.spec.stop_signal, p.spec.hostname) == ("/w", "0:0", "SIGKILL", "h1")


def test_relative_workdir_refused():
    with pytest.raises(UsageError, match="absolute"):
        plan(RunOptions("img", command=["x"], workdir="rel"))


def test_network_host_uses_host_hostname():
    p = plan(RunOptions("img", command=["x"], network="host"), host_hostname="myhost")
    assert p.spec.hostname == "myhost" and p.spec.network == "host"


def test_image_volumes_become_anonymous_unless_covered():
    cfg = {"Volumes": {"/data": {}, "/cache": {}}}
    p = plan(RunOptions("img", command=["x"], volumes=["named:/data"]), cfg)
    by_target = {r.mount.target: r for r in p.mounts}
    assert by_target["/data"].mount.volume_name == "named" and not by_target["/data"].anonymous
    assert by_target["/cache"].anonymous
    assert p.config["Volumes"] == {"/cache": {}, "/data": {}}


def test_mounts_sorted_parents_first_and_duplicates_refused():
    p = plan(RunOptions("img", command=["x"], volumes=["/a/b/c", "/a"]))
    assert [r.mount.target for r in p.mounts] == ["/a", "/a/b/c"]
    with pytest.raises(UsageError, match="duplicate mount point"):
        plan(RunOptions("img", command=["x"], volumes=["/a", "v1:/a"]))


@pytest.mark.parametrize("flag,kind,source,target,ro,extra", [
    ("/data", "volume", "", "/data", False, {"anonymous": True}),
    ("vol:/data:ro", "volume", "", "/data", True, {"anonymous": False}),
    ("vol:/data:nocopy", "volume", "", "/data", False, {"nocopy": True}),
    ("/host/x:/data", "bind", "/host/x", "/data", False, {"create_source": True}),
    ("./rel:/data:ro", "bind", "/cwd/rel", "/data", True, {}),
])
def test_volume_flag(flag, kind, source, target, ro, extra):
    r = ic.parse_volume_flag(flag, cwd="/cwd")
    assert (r.mount.type, r.mount.source, r.mount.target, r.mount.read_only) == (kind, source, target, ro)
    for k, v in extra.items():
        assert getattr(r, k) == v


@pytest.mark.parametrize("flag", ["vol:rel", "v:/a:bogus", "x:/a:b:c", "bad name!:/a", "/h:/a:nocopy"])
def test_volume_flag_errors(flag):
    with pytest.raises(UsageError):
        ic.parse_volume_flag(flag)


def test_mount_flag():
    r = ic.parse_mount_flag("type=bind,source=/src,target=/dst,readonly")
    assert (r.mount.type, r.mount.source, r.mount.target, r.mount.read_only, r.create_source) == ("bind", "/src", "/dst", True, False)
    r = ic.parse_mount_flag("type=volume,src=v1,dst=/d,volume-nocopy=true")
    assert (r.mount.volume_name, r.nocopy, r.anonymous) == ("v1", True, False)
    r = ic.parse_mount_flag("target=/d")
    assert r.anonymous and r.mount.type == "volume"
    r = ic.parse_mount_flag("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1777")
    assert r.mount.options == ["nosuid", "nodev", "noexec", f"size={64 << 20}", "mode=1777"]
    for bad in ("type=bind,target=/x", "type=nfs,target=/x", "type=volume,source=v,target=/x,color=red", "source=v"):
        with pytest.raises(UsageError):
            ic.parse_mount_flag(bad)


def test_tmpfs_flag_defaults():
    r = ic.parse_tmpfs_flag("/run:rw,size=64k,exec")
    assert r.mount.options == ["nosuid", "nodev", "size=64k", "exec"] and not r.mount.read_only


@pytest.mark.parametrize("value,want", [("32m", 32 << 20), ("1g", 1 << 30), ("512k", 512 << 10), ("1024", 1024),
                                        ("1.5GB", int(1.5 * (1 << 30))), (None, None), (7, 7)])
def test_parse_bytes(value, want):
    assert ic.parse_bytes(value) == want


def test_resources_and_limits():
    p = plan(RunOptions("img", command=["x"], memory="32m", cpus=0.5, pids_limit=-1, shm_size="128m",
                        ulimits=["nofile=1024:2048", "nproc=50"], cap_add=["net_admin"], cap_drop=["ALL"]))
    r = p.spec.resources
    assert (r.memory, r.cpus, r.pids, r.shm_size) == (32 << 20, 0.5, None, 128 << 20)
    assert p.spec.ulimits == {"nofile": (1024, 2048), "nproc": (50, 50)}
    assert (p.spec.cap_add, p.spec.cap_drop) == (["CAP_NET_ADMIN"], ["ALL"])
    with pytest.raises(UsageError, match="minimum memory"):
        plan(RunOptions("img", command=["x"], memory="1m"))
    with pytest.raises(UsageError, match="soft limit"):
        ic.parse_ulimit("nofile=10:5")


def test_signals_and_hosts_and_exposed_ports():
    assert ic.normalize_signal("term") == "SIGTERM" and ic.normalize_signal(15) == "SIGTERM"
    with pytest.raises(UsageError):
        ic.normalize_signal("SIGNOPE")
    p = plan(RunOptions("img", command=["x"], add_hosts=["db:10.0.0.2", "api=10.0.0.3"], expose=["8080"]),
             {"ExposedPorts": {"80/tcp": {}}})
    assert p.spec.extra_hosts == ["db:10.0.0.2", "api:10.0.0.3"]
    assert p.config["ExposedPorts"] == {"80/tcp": {}, "8080/tcp": {}}


def test_network_names_pass_and_port_flags_need_one():
    # a network name is left for the manager to attach (stackctl.net.runtime_hooks)
    assert plan(RunOptions("img", command=["x"], network="front", publish=["80"])).spec.network == "front"
    for kw in ({"publish": ["8080:80"]}, {"publish_all": True}, {"network_aliases": ["a"]}, {"ipv4_address": "10.0.0.2"}):
        with pytest.raises(UsageError, match="network"):
            plan(RunOptions("img", command=["x"], network="host", **kw))


def test_shell_split_for_stack_strings():
    assert ic.shell_split("sh -c 'echo hi'") == ["sh", "-c", "echo hi"]
    assert ic.shell_split(["a"]) == ["a"] and ic.shell_split(None) is None


# --- resources_of: what a prepared start creates the cgroup from, before the image is read ---

@pytest.mark.parametrize("kw,want", [
    ({}, Resources(shm_size=64 << 20)),
    ({"memory": "32m"}, Resources(memory=32 << 20)),
    ({"memory": 6 << 20}, Resources(memory=6 << 20)),  # the minimum itself is allowed
    ({"memory_reservation": "16m"}, Resources(memory_reservation=16 << 20)),
    ({"cpus": 1.5}, Resources(cpus=1.5)),
    ({"pids_limit": 100}, Resources(pids=100)),
    ({"pids_limit": 0}, Resources()),  # 0 and -1: unlimited, as Docker
    ({"pids_limit": -1}, Resources()),
    ({"shm_size": "128m"}, Resources(shm_size=128 << 20)),
    ({"shm_size": "1g", "memory": "1g", "cpus": 0.25, "pids_limit": 8},
     Resources(memory=1 << 30, cpus=0.25, pids=8, shm_size=1 << 30)),
])
def test_resources_of_flags(kw, want):
    opts = RunOptions("img", command=["x"], **kw)
    assert ic.resources_of(opts) == want
    # create's plan ends with the very same resources: a prepared start made from the options
    # matches the spec that create writes
    assert plan(opts).spec.resources == want


@pytest.mark.parametrize("kw,match", [
    ({"memory": "5m"}, "minimum memory limit allowed is 6MB"),
    ({"cpus": 0.0}, "invalid --cpus"),
    ({"cpus": -1.0}, "invalid --cpus"),
    ({"memory": "lots"}, "invalid --memory 'lots'"),
    ({"shm_size": "x1"}, "invalid --shm-size"),
    ({"memory_reservation": "1q"}, "invalid --memory-reservation"),
])
def test_resources_of_refuses_bad_flags_as_build_plan_does(kw, match):
    opts = RunOptions("img", command=["x"], **kw)
    with pytest.raises(UsageError, match=match):
        ic.resources_of(opts)
    with pytest.raises(UsageError, match=match):
        plan(opts)


def test_resources_of_ignores_the_image_and_the_rest_of_the_options():
    opts = RunOptions("img", command=["x"], memory="64m", cpus=2.0, tty=True, privileged=True, env=["A=1"],
                      network="host", workdir="/w")
    r = ic.resources_of(opts)
    assert r == Resources(memory=64 << 20, cpus=2.0)
    p = plan(opts, {"Env": ["PATH=/bin"], "Volumes": {"/data": {}}, "Cmd": ["sh"]})
    assert p.spec.resources == r
