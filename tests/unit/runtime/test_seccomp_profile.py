"""The seccomp compiler and Docker's default profile, decided by the reference interpreter;
``--security-opt`` parsing; the network-namespace rule for net.* sysctls; the host's
capability set for --privileged."""

from __future__ import annotations

import json

import pytest

from stackctl.errors import UsageError
from stackctl.runtime.containers import caps, seccomp
from stackctl.runtime.security import check_sysctl_network, parse_security_opts

X86 = seccomp.AUDIT_ARCH["x86_64"]
NR = seccomp.SYSCALL_NUMBERS["x86_64"]
ALLOW = seccomp.RET_ALLOW
EPERM = seccomp.RET_ERRNO | seccomp.EPERM
KERNEL = (6, 1, 0)


def decide(prog: bytes, name: str, *args: int) -> int:
    return seccomp.evaluate(prog, arch=X86, nr=NR[name], args=args)


@pytest.fixture(scope="module")
def default() -> bytes:
    return seccomp.build_filter("x86_64", caps.effective_set([], []), kernel=KERNEL)


def test_io_uring_is_denied(default):
    # Docker 25.0 (moby#46762) took io_uring_* out of the allowlist
    for name in ("io_uring_setup", "io_uring_enter", "io_uring_register"):
        assert decide(default, name) == EPERM, name


def test_socket_families_as_docker(default):
    for fam in (1, 2, 10, 16, 17):  # unix, inet, inet6, netlink, packet
        assert decide(default, "socket", fam, 1, 0) == ALLOW, fam
    for fam in (38, 40, 12, 46, 255):  # AF_ALG, AF_VSOCK, AF_DECnet, past AF_MCTP
        assert decide(default, "socket", fam, 1, 0) == EPERM, fam
    # the comparison is on all 64 bits, as libseccomp's: garbage in the upper half is refused
    assert decide(default, "socket", (1 << 32) | 2) == EPERM


def test_personality_only_docker_five(default):
    for p in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
        assert decide(default, "personality", p) == ALLOW, hex(p)
    for p in (0x0040000, 0x0400000, 0x1, 0x100000000):  # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC...
        assert decide(default, "personality", p) == EPERM, hex(p)


def test_ptrace_family_and_clone(default):
    assert decide(default, "ptrace") == ALLOW  # Docker allows it on kernels >= 4.8
    for name in ("pidfd_getfd", "kcmp", "process_madvise"):
        assert decide(default, name) == EPERM, name
    old = seccomp.build_filter("x86_64", caps.effective_set([], []), kernel=(4, 4, 0))
    assert decide(old, "ptrace") == EPERM
    assert decide(default, "clone3") == seccomp.RET_ERRNO | seccomp.ENOSYS
    assert decide(default, "clone", 0x01200011) == ALLOW
    assert decide(default, "clone", 0x10000000 | 17) == EPERM  # CLONE_NEWUSER
    assert decide(default, "clone", (1 << 40) | 17) == ALLOW  # only the namespace bits count


def test_unknown_and_new_syscalls_get_the_default(default):
    assert decide(default, "kexec_load") == EPERM
    assert seccomp.evaluate(default, arch=X86, nr=999) == EPERM
    assert decide(default, "fchmodat2") == ALLOW  # 6.6, on Docker's list
    assert decide(default, "open_tree_attr") == EPERM  # not on Docker's list


def test_capabilities_open_their_syscalls():
    prog = seccomp.build_filter("x86_64", caps.effective_set(["SYS_ADMIN", "SYS_PTRACE"], []),
                                kernel=KERNEL)
    assert decide(prog, "mount") == ALLOW
    assert decide(prog, "clone3") == ALLOW
    assert decide(prog, "clone", 0x10000000) == ALLOW
    assert decide(prog, "pidfd_getfd") == ALLOW
    assert decide(prog, "keyctl") == EPERM
    dropped = seccomp.build_filter("x86_64", caps.effective_set([], ["SYS_CHROOT"]), kernel=KERNEL)
    assert decide(dropped, "chroot") == EPERM


def test_foreign_abis_get_the_default(default):
    assert seccomp.evaluate(default, arch=0x40000003, nr=0) == EPERM  # i386
    assert seccomp.evaluate(default, arch=X86, nr=0x40000000 | 1) == EPERM  # x32


def test_aarch64_program():
    prog = seccomp.build_filter("aarch64", caps.effective_set([], []), kernel=KERNEL)
    arch = seccomp.AUDIT_ARCH["aarch64"]
    assert seccomp.evaluate(prog, arch=arch, nr=63) == ALLOW  # read
    assert seccomp.evaluate(prog, arch=arch, nr=97) == EPERM  # unshare
    assert seccomp.evaluate(prog, arch=arch, nr=198, args=(40,)) == EPERM  # socket(AF_VSOCK)


@pytest.mark.parametrize("op,value,cases", [
    ("SCMP_CMP_EQ", 5, {5: True, 4: False, (1 << 32) | 5: False}),
    ("SCMP_CMP_NE", 5, {5: False, 4: True, (1 << 32) | 5: True}),
    ("SCMP_CMP_LT", (1 << 32) | 10, {9: True, (1 << 32) | 9: True, (1 << 32) | 10: False, 2 << 32: False}),
    ("SCMP_CMP_LE", 10, {10: True, 11: False, 1 << 32: False}),
    ("SCMP_CMP_GT", 10, {11: True, 10: False, 1 << 32: True, 0: False}),
    ("SCMP_CMP_GE", (1 << 32), {1 << 32: True, 0xFFFFFFFF: False, (1 << 33): True}),
])
def test_64_bit_comparisons(op, value, cases):
    prof = seccomp.parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 2, "value": value, "op": op}]}]})
    prog = seccomp.compile_profile(prof, "x86_64", frozenset(), KERNEL)
    for arg, allowed in cases.items():
        got = decide(prog, "read", 0, 0, arg)
        assert got == (ALLOW if allowed else EPERM), (op, value, arg)


def test_masked_eq_and_actions():
    prof = seccomp.parse_profile({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13,
         "args": [{"index": 0, "value": 0xF0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS"},
        {"names": ["no_such_syscall"], "action": "SCMP_ACT_ERRNO"}]})
    prog = seccomp.compile_profile(prof, "x86_64", frozenset(), KERNEL)
    assert decide(prog, "write", 0x3F) == seccomp.RET_ERRNO | 13
    assert decide(prog, "write", 0x4F) == ALLOW
    assert decide(prog, "getpid") == seccomp.RET_KILL_PROCESS
    assert decide(prog, "read") == ALLOW


def _unconditional(table: dict, nr: int, default: int) -> int | None:
    """The action the rule table gives syscall ``nr`` whatever its arguments (None: it has
    conditions)."""
    rules = table.get(nr)
    if rules is None:
        return default
    return rules[0][1] if len(rules) == 1 and not rules[0][0] else None


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
@pytest.mark.parametrize("capset", [frozenset(), frozenset(caps.CAPS)], ids=["default caps", "all caps"])
def test_every_unconditional_syscall_as_its_rule_says(arch, capset):
    """Runs of consecutive syscalls with one action are tested as ranges: every number from 0
    to past the last known one gets its rule's action (or the default), never a neighbour's."""
    prof = seccomp._default()
    table = seccomp.syscall_rules(prof, arch, capset, KERNEL)
    prog = seccomp.compile_profile(prof, arch, capset, KERNEL)
    assert len(prog) // 8 < 400  # ranges, not a test per syscall (~800 instructions before)
    for nr in range(max(seccomp.SYSCALL_NUMBERS[arch].values()) + 64):
        want = _unconditional(table, nr, prof.default)
        if want is not None:
            assert seccomp.evaluate(prog, arch=seccomp.AUDIT_ARCH[arch], nr=nr) == want, nr


def test_ranges_end_where_the_action_changes():
    prof = seccomp.parse_profile({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
        {"names": ["read", "write", "open"], "action": "SCMP_ACT_ALLOW"},  # 0, 1, 2
        {"names": ["close"], "action": "SCMP_ACT_LOG"},  # 3
        {"names": ["fstat", "lstat"], "action": "SCMP_ACT_ALLOW"},  # 5, 6 (4: stat, the default)
        {"names": ["poll"], "action": "SCMP_ACT_ERRNO"}]})  # 7: the default, said again
    prog = seccomp.compile_profile(prof, "x86_64", frozenset(), KERNEL)
    got = [seccomp.evaluate(prog, arch=X86, nr=nr) for nr in range(9)]
    assert got == [ALLOW, ALLOW, ALLOW, seccomp.RET_LOG, EPERM, ALLOW, ALLOW, EPERM, EPERM]


@pytest.mark.parametrize("bad,words", [
    ([], "JSON object"),
    ({"syscalls": []}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "unsupported action"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "index must be 0 to 5"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
      "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "unsigned 64-bit"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "no syscall names"),
])
def test_bad_profiles_get_one_line(bad, words):
    with pytest.raises(seccomp.SeccompError) as e:
        seccomp.parse_profile(bad, "p.json")
    assert words in str(e.value) and str(e.value).startswith("p.json")
    assert "\n" not in str(e.value)


def test_profile_file_and_program_cache(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW"}))
    data = seccomp.load_profile_file(str(p))
    path = seccomp.program_file(str(tmp_path / "cache"), "x86_64", frozenset(), data)
    assert seccomp.evaluate(open(path, "rb").read(), arch=X86, nr=NR["mount"]) == ALLOW
    assert seccomp.program_file(str(tmp_path / "cache"), "x86_64", frozenset(), data) == path
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(seccomp.SeccompError, match="not valid JSON"):
        seccomp.load_profile_file(str(tmp_path / "bad.json"))
    with pytest.raises(seccomp.SeccompError, match="cannot read"):
        seccomp.load_profile_file(str(tmp_path / "missing.json"))


def test_security_opts():
    o = parse_security_opts([])
    assert (o.seccomp, o.no_new_privileges, o.apparmor) == ("default", True, "")
    o = parse_security_opts(["seccomp=unconfined", "no-new-privileges=false"])
    assert (o.seccomp, o.no_new_privileges) == ("unconfined", False)
    o = parse_security_opts(["seccomp:/x/p.json", "no-new-privileges"])
    assert (o.seccomp, o.seccomp_path, o.no_new_privileges) == ("custom", "/x/p.json", True)
    assert parse_security_opts(["apparmor=unconfined"], apparmor=False).apparmor == "unconfined"
    assert parse_security_opts(["apparmor=p1"], apparmor=True).apparmor == "p1"
    with pytest.raises(UsageError, match="no AppArmor"):
        parse_security_opts(["apparmor=docker-default"], apparmor=False)
    for bad in ("nope", "seccomp=", "no-new-privileges=maybe", "label=disable"):
        with pytest.raises(UsageError):
            parse_security_opts([bad])


def test_net_sysctls_need_an_own_network_namespace():
    assert check_sysctl_network("net.ipv4.ip_forward", "netns:/run/x") is None
    assert check_sysctl_network("net.ipv4.ip_forward", "none") is None
    assert check_sysctl_network("kernel.shmmax", "host") is None
    assert check_sysctl_network("net.ipv4.tcp_keepalive_probes", "host") == \
        'sysctl "net.ipv4.tcp_keepalive_probes" not allowed in host network namespace'
    assert "shared" in check_sysctl_network("net.core.somaxconn", "container:abc")


def test_privileged_gets_what_the_host_has():
    status = "CapPrm:\t000001fffeffffff\nCapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n"
    host = caps.host_caps(status)
    assert "SYS_RESOURCE" not in host and "SYS_ADMIN" in host
    granted, missing = caps.privileged_set(caps.effective_set([], [], privileged=True), host)
    assert missing == ["SYS_RESOURCE"] and "SYS_ADMIN" in granted
