"""Values Docker refuses for ``run``/``create`` are refused here too, as one UsageError, before
anything is made (issue 9 items 6 and 9). Pure: the plan is built without a kernel."""

from __future__ import annotations

import pytest

from stackctl.errors import StackctlError, UsageError
from stackctl.net import ports
from stackctl.runtime import imageconfig as ic
from stackctl.runtime.imageconfig import RunOptions, build_plan

CID = "0123456789ab" + "c" * 52


def plan(**kw):
    opts = RunOptions(image="img", command=["true"], **kw)
    return build_plan(opts, image_id="sha256:" + "f" * 64, image_config={}, layer_dirs=["/l1"],
                      container_id=CID, name="web")


def refused(**kw) -> str:
    with pytest.raises(UsageError) as info:
        plan(**kw)
    assert "\n" not in info.value.message
    return info.value.message


@pytest.mark.parametrize("spec", ["-1:80", "8080:-1", "٨٠:80", "80:٨٠", "0:80", "70000:80",
                                  "9" * 5000 + ":80", "1-:80"])
def test_bad_publish_is_refused_before_anything_is_made(spec):
    with pytest.raises(StackctlError) as info:
        plan(publish=[spec], network="bridge")
    assert "invalid port spec" in info.value.message
    with pytest.raises(StackctlError):
        ports.parse(spec)


def test_cpus_above_the_host_is_dockers_message():
    with pytest.raises(UsageError) as info:
        ic.check_cpus(1000, available=2)
    assert info.value.message == ("range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs "
                                  "available")
    ic.check_cpus(2, available=2)
    ic.check_cpus(0.01, available=2)
    with pytest.raises(UsageError):
        ic.check_cpus(0.001, available=2)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1.0, 0.0])
def test_cpus_not_a_number_is_a_clear_line(value):
    message = refused(cpus=value)
    assert message.startswith("invalid --cpus")


def test_dns_must_be_an_address():
    assert "not an IP address" in refused(dns=["notanip"])
    plan(dns=["1.1.1.1", "2606:4700::1111"])


def test_memory_reservation_above_the_limit():
    assert "memory reservation" in refused(memory="10m", memory_reservation="20m")
    plan(memory="20m", memory_reservation="10m")


@pytest.mark.parametrize("entry", ["99999", "0", "80-70", "٨٠", "80/sctpx", "abc", "1-99999"])
def test_bad_expose_is_refused(entry):
    assert refused(expose=[entry]).startswith("invalid --expose")


def test_expose_keys_are_dockers():
    assert set(plan(expose=["80", "53/udp", "8000-8002"]).config["ExposedPorts"]) == {
        "80/tcp", "53/udp", "8000-8002/tcp"}


@pytest.mark.parametrize("flag,value", [("volumes", "x:/"), ("volumes", "/tmp:/"),
                                        ("volumes", "/tmp://"), ("volumes", "/tmp:/a/.."),
                                        ("mounts", "type=bind,source=/tmp,target=/"),
                                        ("tmpfs", "/")])
def test_mount_over_the_root_is_refused(flag, value):
    assert "can't be '/'" in refused(**{flag: [value]})


def test_env_value_over_the_kernel_limit_names_the_variable():
    message = refused(env=["BIG=" + "a" * (128 * 1024)])
    assert "BIG" in message and "131072" in message
    plan(env=["OK=" + "a" * (128 * 1024 - 4)])  # with "OK=" and the NUL: exactly the limit


def test_argument_over_the_kernel_limit_is_refused():
    with pytest.raises(UsageError) as info:
        build_plan(RunOptions(image="img", command=["echo", "a" * 200_000]), image_id="x",
                   image_config={}, layer_dirs=[], container_id=CID, name="web")
    assert "argument 1" in info.value.message


@pytest.mark.parametrize("value", ["٨٠m", "9" * 40 + "g", "1e400", "nan", "-5m"])
def test_bad_sizes_are_usage_errors(value):
    with pytest.raises(UsageError):
        ic.parse_bytes(value, "--memory")


@pytest.mark.parametrize("value", ["nofile=١٠", "nofile=1_0", "nofile= 10", "nofile=" + "9" * 5000])
def test_bad_ulimits_are_usage_errors(value):
    with pytest.raises(UsageError):
        ic.parse_ulimit(value)


@pytest.mark.parametrize("kw", [{"pids_limit": 10**23}, {"stop_timeout": 10**23}])
def test_integers_past_their_range_are_refused(kw):
    assert "out of range" in refused(**kw)
