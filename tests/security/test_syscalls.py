"""Syscall-level attacks from inside a container started with default options (one run of
``attack all``, see conftest.py). Each test says what Docker's default does; stackctl must
refuse at least as much. "seccomp" below is Docker's default profile (moby/profiles
seccomp/default.json); "caps" its default capability set (moby oci/caps/defaults.go)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.root


def blocked(attempts: dict[str, str], name: str, *errnos: str) -> None:
    result = attempts.get(name)
    assert result is not None, f"{name} was not tried"
    assert result.startswith("blocked"), f"{name}: {result}"
    if errnos:
        assert result.split()[1] in errnos, f"{name}: {result}"


def test_io_uring_setup(syscall_attempts):
    """Docker (25.0+, moby#46762): io_uring_setup/enter/register are not on the seccomp
    allowlist, so they fail with EPERM."""
    blocked(syscall_attempts, "io_uring_setup", "EPERM")


def test_socket_af_vsock(syscall_attempts):
    """Docker (24.0+, moby#44562; moby/profiles): socket(AF_VSOCK) is refused (EPERM), so a
    container on a VM cannot reach the hypervisor's vsock agents."""
    blocked(syscall_attempts, "socket_vsock", "EPERM")


def test_socket_af_alg(syscall_attempts):
    """Docker (moby/profiles): socket(AF_ALG) — the kernel crypto API, a frequent source of
    kernel bugs — is refused (EPERM)."""
    blocked(syscall_attempts, "socket_alg", "EPERM")


def test_personality_addr_no_randomize(syscall_attempts):
    """Docker: personality() only with 0, 8, 0x20000, 0x20008 or 0xffffffff; switching off
    ASLR (ADDR_NO_RANDOMIZE) gets EPERM."""
    blocked(syscall_attempts, "personality_addr_no_randomize", "EPERM")


def test_personality_read_implies_exec(syscall_attempts):
    """Docker: personality(READ_IMPLIES_EXEC) gets EPERM (not one of the five values)."""
    blocked(syscall_attempts, "personality_read_implies_exec", "EPERM")


def test_keyctl(syscall_attempts):
    """Docker: keyctl is not on the allowlist (the keyring is not namespaced): EPERM."""
    blocked(syscall_attempts, "keyctl", "EPERM")


def test_add_key(syscall_attempts):
    """Docker: add_key is not on the allowlist: EPERM."""
    blocked(syscall_attempts, "add_key", "EPERM")


def test_request_key(syscall_attempts):
    """Docker: request_key is not on the allowlist: EPERM."""
    blocked(syscall_attempts, "request_key", "EPERM")


def test_bpf(syscall_attempts):
    """Docker: bpf only with CAP_SYS_ADMIN or CAP_BPF (neither is a default cap): EPERM."""
    blocked(syscall_attempts, "bpf", "EPERM")


def test_perf_event_open(syscall_attempts):
    """Docker: perf_event_open only with CAP_SYS_ADMIN or CAP_PERFMON: EPERM."""
    blocked(syscall_attempts, "perf_event_open", "EPERM")


def test_kexec_load(syscall_attempts):
    """Docker: kexec_load is not on the allowlist (loading a new kernel): EPERM."""
    blocked(syscall_attempts, "kexec_load", "EPERM")


def test_kexec_file_load(syscall_attempts):
    """Docker: kexec_file_load is not on the allowlist: EPERM."""
    blocked(syscall_attempts, "kexec_file_load", "EPERM")


def test_init_module(syscall_attempts):
    """Docker: init_module only with CAP_SYS_MODULE (not a default cap): EPERM."""
    blocked(syscall_attempts, "init_module", "EPERM")


def test_finit_module(syscall_attempts):
    """Docker: finit_module only with CAP_SYS_MODULE: EPERM."""
    blocked(syscall_attempts, "finit_module", "EPERM")


def test_delete_module(syscall_attempts):
    """Docker: delete_module only with CAP_SYS_MODULE: EPERM."""
    blocked(syscall_attempts, "delete_module", "EPERM")


def test_ptrace_of_a_host_process(syscall_attempts):
    """Docker: ptrace is allowed (kernel >= 4.8) but the container's pid namespace holds no
    host process, so attaching to the test process's host pid fails (ESRCH), or EPERM."""
    blocked(syscall_attempts, "ptrace_host_process", "ESRCH", "EPERM")


def test_process_vm_readv_of_a_host_process(syscall_attempts):
    """Docker: process_vm_readv is allowed (kernel >= 4.8) but finds no host process from
    the container's pid namespace (ESRCH)."""
    blocked(syscall_attempts, "process_vm_readv_host", "ESRCH", "EPERM")


def test_pidfd_getfd(syscall_attempts):
    """Docker: pidfd_getfd (stealing another process's file descriptors) only with
    CAP_SYS_PTRACE: EPERM."""
    blocked(syscall_attempts, "pidfd_getfd", "EPERM")


@pytest.mark.parametrize("ns", ["user", "mount", "net", "pid", "cgroup"])
def test_unshare_namespaces(syscall_attempts, ns):
    """Docker: unshare only with CAP_SYS_ADMIN (seccomp), so no new user, mount, net, pid or
    cgroup namespace: EPERM."""
    blocked(syscall_attempts, f"unshare_{ns}", "EPERM")


def test_clone_with_a_namespace_flag(syscall_attempts):
    """Docker: clone is allowed only without namespace flags (MASKED_EQ 0x7e020000) unless
    CAP_SYS_ADMIN: clone(CLONE_NEWUSER) gets EPERM."""
    blocked(syscall_attempts, "clone_newuser", "EPERM")


def test_clone3_is_enosys(syscall_attempts):
    """Docker: clone3 gets ENOSYS without CAP_SYS_ADMIN (its flags are in memory, where a
    filter cannot see them; libc then falls back to clone)."""
    blocked(syscall_attempts, "clone3", "ENOSYS")


@pytest.mark.parametrize("what", ["mount_tmpfs", "mount_proc", "umount_proc", "pivot_root",
                                  "open_tree", "fsopen"])
def test_mount_family(syscall_attempts, what):
    """Docker: mount, umount2, pivot_root and the new mount API (open_tree, fsopen, ...)
    only with CAP_SYS_ADMIN: EPERM."""
    blocked(syscall_attempts, what, "EPERM")


def test_open_by_handle_at(syscall_attempts):
    """Docker: open_by_handle_at (the "shocker" escape) only with CAP_DAC_READ_SEARCH: EPERM."""
    blocked(syscall_attempts, "open_by_handle_at", "EPERM")


def test_setns(syscall_attempts):
    """Docker: setns only with CAP_SYS_ADMIN: EPERM."""
    blocked(syscall_attempts, "setns", "EPERM")


def test_sethostname(syscall_attempts):
    """Docker: sethostname only with CAP_SYS_ADMIN (seccomp): EPERM."""
    blocked(syscall_attempts, "sethostname", "EPERM")


def test_settimeofday(syscall_attempts):
    """Docker: settimeofday only with CAP_SYS_TIME (the clock is the host's): EPERM."""
    blocked(syscall_attempts, "settimeofday", "EPERM")


def test_reboot(syscall_attempts):
    """Docker: reboot only with CAP_SYS_BOOT: EPERM."""
    blocked(syscall_attempts, "reboot", "EPERM")


def test_swapon(syscall_attempts):
    """Docker: swapon is not on the allowlist: EPERM."""
    blocked(syscall_attempts, "swapon", "EPERM")


def test_syslog(syscall_attempts):
    """Docker: syslog (reading the kernel log) only with CAP_SYSLOG / CAP_SYS_ADMIN: EPERM."""
    blocked(syscall_attempts, "syslog", "EPERM")


def test_acct(syscall_attempts):
    """Docker: acct only with CAP_SYS_PACCT: EPERM."""
    blocked(syscall_attempts, "acct", "EPERM")


@pytest.mark.parametrize("what", ["iopl", "ioperm"])
def test_port_io(syscall_attempts, what):
    """Docker: iopl and ioperm (raw I/O ports) only with CAP_SYS_RAWIO: EPERM."""
    blocked(syscall_attempts, what, "EPERM")


def test_userfaultfd(syscall_attempts):
    """Docker: userfaultfd (a help for kernel race exploits) is not on the allowlist: EPERM."""
    blocked(syscall_attempts, "userfaultfd", "EPERM")


def test_lookup_dcookie_and_quotactl(syscall_attempts):
    """Docker: lookup_dcookie and quotactl only with CAP_SYS_ADMIN: EPERM."""
    blocked(syscall_attempts, "lookup_dcookie", "EPERM", "ENOSYS")
    blocked(syscall_attempts, "quotactl", "EPERM")


def test_mknod_dev_mem_then_open(syscall_attempts):
    """Docker: mknod is allowed (CAP_MKNOD is a default cap) but the device cgroup denies
    opening anything but the standard devices, so /dev/mem made by hand cannot be opened."""
    blocked(syscall_attempts, "mknod_dev_mem_open", "EPERM")


def test_write_proc_sysrq_trigger(syscall_attempts):
    """Docker: /proc/sysrq-trigger is read-only in a container (readonlyPaths): writing
    fails."""
    blocked(syscall_attempts, "write_proc_sysrq")


def test_write_proc_sys_kernel(syscall_attempts):
    """Docker: /proc/sys is read-only (readonlyPaths): setting kernel.core_pattern (a
    classic escape: the host runs the pattern's program) fails."""
    blocked(syscall_attempts, "write_proc_sys_kernel", "EROFS", "EACCES", "EPERM")


def test_write_sys(syscall_attempts):
    """Docker: /sys is mounted read-only for unprivileged containers: writing a module
    parameter fails (EROFS)."""
    blocked(syscall_attempts, "write_sys_module_param", "EROFS", "EACCES", "EPERM")
