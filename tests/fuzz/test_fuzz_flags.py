"""The parsers of command-line flag values: ports, sizes, durations and times, CPUs, ulimits,
environment, volumes and mounts, labels, hosts, signals, image references, and run's own
argument parser. Any text gives a value or a StackctlError with one line."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_settings import FUZZ, bounded
from stackctl.cli.run_cmd import parse_run_args
from stackctl.net import ports
from stackctl.runtime import imageconfig as ic
from stackctl.runtime import logs
from stackctl.runtime.images import refs

# text that looks like the flags' values, with the characters that break parsers: non-ASCII
# digits (int() takes them), signs, separators, huge digit runs, NUL, newlines
ALPHABET = list("0123456789:-/.,=+ abcdefgkmpstuxyzTZ@[]_~\n\x00") + ["٨", "²", "١", "߀"]
values = st.one_of(
    st.text(alphabet=st.sampled_from(ALPHABET), max_size=40),
    st.text(max_size=20),
    st.integers(0, 6000).map(lambda n: "9" * n),
    st.sampled_from(["-1:80", "٨٠:80", "80:80/sctp", "[::1]:80:80", "1.2.3.4:1-2:3-4",
                     "nofile=1:2", "nofile=-1", "1e400", "nan", "inf", "1_000", "0x10",
                     "type=bind,src=/a,dst=/b,readonly", "/a:/b:ro,z", "a:/", "/:/x",
                     "2024-05-01T12:00:00Z", "10m", "1h30m", "SIGKILL", "99", "busybox:1",
                     "x@sha256:" + "a" * 64, "host:5000/a/b:1.0", "K=V", "=V"]),
)

PARSERS = {
    "publish": ports.parse,
    "memory": lambda v: ic.parse_bytes(v, "--memory"),
    "ulimit": ic.parse_ulimit,
    "expose": ic.check_expose,
    "dns": lambda v: ic.check_dns([v]),
    "add-host": ic.parse_add_host,
    "labels": lambda v: ic.parse_labels([v]),
    "volume": ic.parse_volume_flag,
    "mount": ic.parse_mount_flag,
    "tmpfs": ic.parse_tmpfs_flag,
    "signal": ic.normalize_signal,
    "env-file": ic.parse_env_file,
    "env": lambda v: ic.resolve_env([v], {"A": "1"}),
    "since": lambda v: logs.parse_time_arg(v, 10**18),
    "tail": logs.parse_tail,
    "image": refs.parse,
    "image-lookup": refs.parse_lookup,
    "security-opt": lambda v: ic.parse_security_opts([v], apparmor=False),
}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_flag_values(name):
    parser = PARSERS[name]

    @FUZZ
    @given(value=values)
    def check(value):
        with bounded():
            parser(value)

    check()


@FUZZ
@given(cpus=st.one_of(st.floats(), st.integers(-10, 10**6)), available=st.integers(1, 512))
def test_cpus(cpus, available):
    with bounded():
        ic.check_cpus(cpus, available)
        assert math.isfinite(cpus) and 0.01 <= cpus <= available


OPTIONS = ["-e", "--env", "-v", "-p", "--cpus", "-m", "--pids-limit", "--stop-timeout", "-it",
           "-d", "--rm", "--name", "--", "--ulimit", "--expose", "--dns", "--network", "-eX=1",
           "--cpus=nan", "--pids-limit=٨", "--stop-timeout=" + "9" * 5000, "-w", "-u", "img"]


@FUZZ
@given(args=st.lists(st.one_of(st.sampled_from(OPTIONS), values), max_size=10))
def test_run_argument_parser(args):
    """The fast parser gives click's parameters or None (click then explains); it never
    raises, whatever the arguments."""
    with bounded():
        parsed = parse_run_args(list(args))
    if parsed is not None:
        image, command, params = parsed
        assert isinstance(image, str) and isinstance(command, tuple)


@FUZZ
@given(opts=st.fixed_dictionaries({}, optional={
    "publish": st.lists(values, max_size=2), "expose": st.lists(values, max_size=2),
    "dns": st.lists(values, max_size=2), "volumes": st.lists(values, max_size=2),
    "mounts": st.lists(values, max_size=2), "tmpfs": st.lists(values, max_size=2),
    "ulimits": st.lists(values, max_size=2), "env": st.lists(values, max_size=2),
    "memory": values, "memory_reservation": values, "shm_size": values,
    "cpus": st.floats(), "pids_limit": st.integers(-5, 2**70), "stop_signal": values,
    "sysctls": st.lists(values, max_size=2), "add_hosts": st.lists(values, max_size=2),
    "user": values, "workdir": values, "hostname": values, "labels": st.dictionaries(
        values, values, max_size=2)}))
def test_create_plan(opts):
    """Everything ``run``/``create`` are given is checked by build_plan: a plan or one line."""
    with bounded():
        ic.build_plan(ic.RunOptions(image="img", command=["true"], network="bridge", **opts),
                      image_id="sha256:" + "f" * 64, image_config={}, layer_dirs=["/l"],
                      container_id="c" * 64, name="web")
