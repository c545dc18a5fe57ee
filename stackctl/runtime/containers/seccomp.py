"""The default seccomp filter: a classic-BPF program that returns EPERM for the syscalls
Docker's default profile refuses to a container without the matching capability.

Docker's profile is an allowlist (~350 syscalls); this filter is the equivalent denylist of the
dangerous ones, which keeps the program short (one compare per denied syscall) and leaves new,
harmless syscalls usable. Pure: :func:`build_filter` returns bytes; :func:`evaluate` runs a
program in a tiny BPF interpreter so tests can check decisions without installing anything.
Installed last, right before execve, and skipped for privileged containers.
"""

from __future__ import annotations

import struct

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
X32_SYSCALL_BIT = 0x40000000

RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000
RET_KILL_PROCESS = 0x80000000
EPERM = 1
ENOSYS = 38

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000

# syscall -> the capability that makes Docker allow it (None: always denied)
DENIED: dict[str, str | None] = {
    "kexec_load": "SYS_BOOT", "kexec_file_load": "SYS_BOOT", "reboot": "SYS_BOOT",
    "open_by_handle_at": "DAC_READ_SEARCH", "name_to_handle_at": None,
    "init_module": "SYS_MODULE", "finit_module": "SYS_MODULE", "delete_module": "SYS_MODULE",
    "create_module": None, "get_kernel_syms": None, "query_module": None,
    "keyctl": None, "add_key": None, "request_key": None,
    "bpf": "SYS_ADMIN", "perf_event_open": "PERFMON", "userfaultfd": None,
    "ptrace": "SYS_PTRACE", "process_vm_readv": "SYS_PTRACE", "process_vm_writev": "SYS_PTRACE",
    "kcmp": "SYS_PTRACE",
    "swapon": "SYS_ADMIN", "swapoff": "SYS_ADMIN", "acct": "SYS_PACCT", "quotactl": "SYS_ADMIN",
    "settimeofday": "SYS_TIME", "clock_settime": "SYS_TIME", "clock_adjtime": "SYS_TIME",
    "adjtimex": "SYS_TIME", "syslog": "SYSLOG", "iopl": "SYS_RAWIO", "ioperm": "SYS_RAWIO",
    "mount": "SYS_ADMIN", "umount2": "SYS_ADMIN", "pivot_root": "SYS_ADMIN",
    "unshare": "SYS_ADMIN", "setns": "SYS_ADMIN",
    "fsopen": "SYS_ADMIN", "fsconfig": "SYS_ADMIN", "fsmount": "SYS_ADMIN", "fspick": "SYS_ADMIN",
    "move_mount": "SYS_ADMIN", "open_tree": "SYS_ADMIN", "mount_setattr": "SYS_ADMIN",
    "lookup_dcookie": "SYS_ADMIN", "get_mempolicy": "SYS_NICE", "set_mempolicy": "SYS_NICE",
    "mbind": "SYS_NICE", "move_pages": "SYS_NICE", "uselib": None, "_sysctl": None,
    "nfsservctl": None, "vhangup": "SYS_TTY_CONFIG", "sysfs": None, "ustat": None,
}

SYSCALL_NUMBERS = {
    "x86_64": {
        "kexec_load": 246, "kexec_file_load": 320, "open_by_handle_at": 304, "name_to_handle_at": 303,
        "init_module": 175, "finit_module": 313, "delete_module": 176, "keyctl": 250, "add_key": 248,
        "request_key": 249, "bpf": 321, "perf_event_open": 298, "ptrace": 101, "process_vm_readv": 310,
        "process_vm_writev": 311, "kcmp": 312, "reboot": 169, "swapon": 167, "swapoff": 168,
        "userfaultfd": 323, "acct": 163, "quotactl": 179, "settimeofday": 164, "clock_settime": 227,
        "clock_adjtime": 305, "adjtimex": 159, "syslog": 103, "iopl": 172, "ioperm": 173, "mount": 165,
        "umount2": 166, "pivot_root": 155, "unshare": 272, "setns": 308, "fsopen": 430, "fsconfig": 431,
        "fsmount": 432, "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
        "lookup_dcookie": 212, "get_mempolicy": 239, "set_mempolicy": 238, "mbind": 237,
        "move_pages": 279, "uselib": 134, "create_module": 174, "get_kernel_syms": 177,
        "query_module": 178, "_sysctl": 156, "nfsservctl": 180, "vhangup": 153, "sysfs": 139,
        "ustat": 136, "clone": 56, "clone3": 435,
    },
    "aarch64": {
        "kexec_load": 104, "kexec_file_load": 294, "open_by_handle_at": 265, "name_to_handle_at": 264,
        "init_module": 105, "finit_module": 273, "delete_module": 106, "keyctl": 219, "add_key": 217,
        "request_key": 218, "bpf": 280, "perf_event_open": 241, "ptrace": 117, "process_vm_readv": 270,
        "process_vm_writev": 271, "kcmp": 272, "reboot": 142, "swapon": 224, "swapoff": 225,
        "userfaultfd": 282, "acct": 89, "quotactl": 60, "settimeofday": 170, "clock_settime": 112,
        "clock_adjtime": 266, "adjtimex": 171, "syslog": 116, "mount": 40, "umount2": 39,
        "pivot_root": 41, "unshare": 97, "setns": 268, "fsopen": 430, "fsconfig": 431, "fsmount": 432,
        "fspick": 433, "move_mount": 429, "open_tree": 428, "mount_setattr": 442, "lookup_dcookie": 18,
        "get_mempolicy": 236, "set_mempolicy": 237, "mbind": 235, "move_pages": 239, "nfsservctl": 42,
        "vhangup": 58, "clone": 220, "clone3": 435,
    },
}


class SeccompError(ValueError):
    pass


def _ins(code: int, jt: int = 0, jf: int = 0, k: int = 0) -> tuple[int, int, int, int]:
    return (code, jt, jf, k)


def assemble(program: list[tuple]) -> bytes:
    """Assemble ``(op, jt, jf, k)`` tuples and ``("label", name)`` markers; jt/jf may be label
    names (forward jumps only, as classic BPF requires)."""
    labels: dict[str, int] = {}
    pc = 0
    for item in program:
        if item[0] == "label":
            labels[item[1]] = pc
        else:
            pc += 1
    out = bytearray()
    pc = 0
    for item in program:
        if item[0] == "label":
            continue
        code, jt, jf, k = item

        def rel(t):
            if isinstance(t, str):
                off = labels[t] - pc - 1
                if not 0 <= off <= 255:
                    raise SeccompError(f"jump to {t} out of range ({off})")
                return off
            return t

        out += struct.pack("<HBBI", code, rel(jt), rel(jf), k & 0xFFFFFFFF)
        pc += 1
    return bytes(out)


def denied_syscalls(caps: frozenset[str] | set[str]) -> list[str]:
    """The syscalls refused to a container holding ``caps``."""
    return sorted(n for n, cap in DENIED.items() if cap is None or cap not in caps)


def build_filter(arch: str, caps: frozenset[str] | set[str]) -> bytes:
    """The filter for ``arch`` ("x86_64" / "aarch64") and a container's capability names.

    Foreign architectures (i386 / x32 on x86_64, arm32 on aarch64) get EPERM for everything,
    so a compat syscall table cannot be used to get around the list. clone3 gets ENOSYS (libc
    then falls back to clone, whose flags a classic filter can see); clone with any
    namespace flag gets EPERM unless the container has CAP_SYS_ADMIN."""
    if arch not in AUDIT_ARCH:
        raise SeccompError(f"no seccomp filter for architecture {arch}")
    nrs = SYSCALL_NUMBERS[arch]
    prog: list[tuple] = [
        _ins(LD_W_ABS, k=4),
        _ins(JEQ_K, 0, "deny", AUDIT_ARCH[arch]),
        _ins(LD_W_ABS, k=0),
    ]
    if arch == "x86_64":
        prog.append(_ins(JGE_K, "deny", 0, X32_SYSCALL_BIT))
    for name in denied_syscalls(caps):
        if name in nrs:
            prog.append(_ins(JEQ_K, "deny", 0, nrs[name]))
    if "SYS_ADMIN" not in caps:
        prog.append(_ins(JEQ_K, "enosys", 0, nrs["clone3"]))
        prog.append(_ins(JEQ_K, 0, "allow", nrs["clone"]))
        prog.append(_ins(LD_W_ABS, k=16))  # low 32 bits of args[0] (little endian)
        prog.append(_ins(JSET_K, "deny", "allow", NS_FLAGS))
    prog += [
        ("label", "allow"), _ins(RET_K, k=RET_ALLOW),
        ("label", "deny"), _ins(RET_K, k=RET_ERRNO | EPERM),
        ("label", "enosys"), _ins(RET_K, k=RET_ERRNO | ENOSYS),
    ]
    return assemble(prog)


def evaluate(program: bytes, *, arch: int, nr: int, args: tuple[int, ...] = ()) -> int:
    """Run ``program`` on one syscall (a reference interpreter for the opcodes we emit)."""
    args = tuple(args) + (0,) * (6 - len(args))
    data = struct.pack("<iIQ6Q", nr, arch, 0, *args)
    ins = [struct.unpack_from("<HBBI", program, i) for i in range(0, len(program), 8)]
    acc = 0
    pc = 0
    while pc < len(ins):
        code, jt, jf, k = ins[pc]
        if code == LD_W_ABS:
            acc = struct.unpack_from("<I", data, k)[0]
        elif code == RET_K:
            return k
        elif code in (JEQ_K, JGE_K, JSET_K):
            cond = acc == k if code == JEQ_K else acc >= k if code == JGE_K else bool(acc & k)
            pc += jt if cond else jf
        else:
            raise SeccompError(f"unknown opcode {code:#x}")
        pc += 1
    raise SeccompError("program fell off the end")


def install(arch: str, caps: frozenset[str]) -> None:
    from stackctl.runtime.containers import linux

    linux.seccomp_set_filter(build_filter(arch, caps))
