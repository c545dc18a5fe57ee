"""Seccomp: profiles in Docker's JSON format, compiled to a classic-BPF program.

The default profile (:data:`DEFAULT_PROFILE`) is Docker's current default (moby/profiles
``seccomp/default.json``), rule for rule: an allowlist whose default answer is EPERM, with
capability-dependent rules (``mount`` only with CAP_SYS_ADMIN, ...), argument filters
(``socket`` only for the address families Docker allows — so no AF_VSOCK, AF_ALG;
``personality`` only with its five values; ``clone`` without namespace flags), ``clone3``
answered ENOSYS (libc then falls back to ``clone``, whose flags a filter can see), and no
io_uring. Where stackctl deliberately differs (docs/security.md lists it): syscalls of a
foreign ABI (i386 and x32 on x86_64, arm32 on aarch64) get the default answer, where Docker
applies the same list to them.

``--security-opt seccomp=PROFILE.json`` gives a profile in the same format; it is parsed by
:func:`parse_profile` (one clear line for anything wrong) and compiled the same way.

Pure: :func:`compile_profile` returns bytes; :func:`evaluate` runs a program in a small BPF
interpreter so tests check decisions without installing anything. The program is installed
last, right before execve, and not at all for privileged or ``seccomp=unconfined`` containers.

Compilation: the architecture check, then one block per syscall that has a rule, in number
order: ``jeq nr`` → the action (a syscall without argument rules), or → its rules in order,
each a chain of 64-bit argument comparisons (two 32-bit halves), the first rule whose
comparisons all hold giving the answer, else the default. Since Linux 5.11 the kernel caches
the verdict of syscalls whose answer does not depend on arguments, so the length of the
chain costs nothing for the common syscalls.
"""

from __future__ import annotations

import json
import _thread
import os
import struct
from collections import namedtuple
from functools import lru_cache

from stackctl.errors import StackctlError
from stackctl.runtime.containers.syscalls import TABLES

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}  # the names profiles use in includes/excludes
X32_SYSCALL_BIT = 0x40000000
SYSCALL_NUMBERS = TABLES

RET_KILL_THREAD = 0x00000000
RET_KILL_PROCESS = 0x80000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
EPERM = 1
ENOSYS = 38

# classic BPF opcodes
LD_W_ABS = 0x20
ALU_AND_K = 0x54
JA = 0x05
JEQ_K = 0x15
JGT_K = 0x25
JGE_K = 0x35
JSET_K = 0x45
RET_K = 0x06

ACTIONS = {
    "SCMP_ACT_ALLOW": RET_ALLOW, "SCMP_ACT_ERRNO": RET_ERRNO, "SCMP_ACT_KILL": RET_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": RET_KILL_THREAD, "SCMP_ACT_KILL_PROCESS": RET_KILL_PROCESS,
    "SCMP_ACT_TRAP": RET_TRAP, "SCMP_ACT_LOG": RET_LOG,
}
OPS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ")
CLONE_NS_FLAGS = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET


class SeccompError(StackctlError):
    """A seccomp profile that cannot be used (names the file and the problem)."""


# --- Docker's default profile ------------------------------------------------------------

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat
fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32
geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32 getrlimit
get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid gettimeofday
getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64
ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listmount listxattr
listxattrat llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock
mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat _newselect
open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease
pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename
renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler
sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile
sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt
set_thread_area set_tid_address setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget
shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat
stat64 statfs statfs64 statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo
tee tgkill time timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
writev
"""

# socket(2) address families Docker's profile allows (so not AF_DECnet 12, AF_ECONET 19,
# AF_ATMSVC 20, AF_IRDA 23, AF_WANPIPE 25, AF_ISDN 34, AF_CAIF 37, AF_ALG 38, AF_VSOCK 40, nor
# any family above AF_MCTP 45)
SOCKET_FAMILIES_EQ = (13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35,
                      36, 39, 41, 42, 43, 44, 45)
SOCKET_FAMILIES_BELOW = 12
# PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32|UNAME26, and 0xffffffff (query)
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

_BY_CAP = (
    ("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ("CAP_SYS_ADMIN", "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie "
                      "lsm_get_self_attr lsm_list_modules lsm_set_self_attr mount mount_setattr "
                      "move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname "
                      "sethostname setns syslog umount umount2 unshare"),
    ("CAP_SYS_BOOT", "reboot"),
    ("CAP_SYS_CHROOT", "chroot"),
    ("CAP_SYS_MODULE", "delete_module init_module finit_module"),
    ("CAP_SYS_PACCT", "acct"),
    ("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
    ("CAP_SYS_RAWIO", "iopl ioperm"),
    ("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
    ("CAP_SYS_TTY_CONFIG", "vhangup"),
    ("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
    ("CAP_SYSLOG", "syslog"),
    ("CAP_BPF", "bpf"),
    ("CAP_PERFMON", "perf_event_open"),
)


def _default_profile() -> dict:
    def allow(names: str, **extra) -> dict:
        return {"names": names.split(), "action": "SCMP_ACT_ALLOW", **extra}

    def arg0(op: str, value: int, **extra) -> dict:
        return {"index": 0, "value": value, "op": op, **extra}

    rules = [allow(_ALLOWED),
             allow("process_vm_readv process_vm_writev ptrace", includes={"minKernel": "4.8"}),
             allow("socket", args=[arg0("SCMP_CMP_LT", SOCKET_FAMILIES_BELOW)])]
    rules += [allow("socket", args=[arg0("SCMP_CMP_EQ", f)]) for f in SOCKET_FAMILIES_EQ]
    rules += [allow("personality", args=[arg0("SCMP_CMP_EQ", p)]) for p in PERSONALITIES]
    rules += [
        allow("sync_file_range2 swapcontext", includes={"arches": ["ppc64le"]}),
        allow("arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls",
              includes={"arches": ["arm", "arm64"]}),
        allow("arch_prctl", includes={"arches": ["amd64", "x32"]}),
        allow("modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
        allow("s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr",
              includes={"arches": ["s390", "s390x"]}),
        allow("riscv_flush_icache", includes={"arches": ["riscv64"]}),
    ]
    rules += [allow(names, includes={"caps": [cap]}) for cap, names in _BY_CAP[:2]]
    rules += [
        allow("clone", args=[arg0("SCMP_CMP_MASKED_EQ", CLONE_NS_FLAGS, valueTwo=0)],
              excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}),
        allow("clone", args=[{"index": 1, "value": CLONE_NS_FLAGS, "valueTwo": 0,
                              "op": "SCMP_CMP_MASKED_EQ"}],
              includes={"arches": ["s390", "s390x"]}, excludes={"caps": ["CAP_SYS_ADMIN"]}),
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
         "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
    ]
    rules += [allow(names, includes={"caps": [cap]}) for cap, names in _BY_CAP[2:]]
    return {"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": EPERM, "syscalls": rules}


DEFAULT_PROFILE: dict = _default_profile()


# --- the profile model -------------------------------------------------------------------

# plain named tuples (typing.NamedTuple would import typing on the start path)
Arg = namedtuple("Arg", "index value value_two op")
Rule = namedtuple("Rule", "names action args caps_in caps_out arches_in arches_out min_kernel",
                  defaults=((), (), (), (), (), ()))  # action: RET_* | errno
Profile = namedtuple("Profile", "default rules")


def _action(name: object, errno: object, default_errno: int, where: str) -> int:
    if name not in ACTIONS:
        raise SeccompError(f"{where}: unsupported action {name!r} "
                           f"(one of {', '.join(sorted(ACTIONS))})")
    ret = ACTIONS[str(name)]
    if ret == RET_ERRNO:
        e = default_errno if errno is None else errno
        if not isinstance(e, int) or isinstance(e, bool) or not 0 <= e <= 4095:
            raise SeccompError(f"{where}: errnoRet must be a number from 0 to 4095, got {e!r}")
        ret |= e
    return ret


def _int(v: object, where: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 64:
        raise SeccompError(f"{where}: expected an unsigned 64-bit number, got {v!r}")
    return v


def _names(v: object, where: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SeccompError(f"{where}: expected a list of strings")
    return tuple(v)


def _kernel(v: object, where: str) -> tuple[int, ...]:
    if not v:
        return ()
    try:
        return tuple(int(p) for p in str(v).split("."))
    except ValueError:
        raise SeccompError(f"{where}: minKernel {v!r} is not a version like 4.8") from None


def parse_profile(data: object, source: str = "the seccomp profile") -> Profile:
    """A Docker-format profile (the JSON object) as a :class:`Profile`; a SeccompError naming
    ``source`` and the place of the first problem otherwise."""
    if not isinstance(data, dict):
        raise SeccompError(f"{source}: expected a JSON object with defaultAction and syscalls")
    if "defaultAction" not in data:
        raise SeccompError(f"{source}: defaultAction is missing")
    default_errno = data.get("defaultErrnoRet")
    default_errno = EPERM if default_errno is None else default_errno
    default = _action(data["defaultAction"], default_errno, EPERM, f"{source}: defaultAction")
    calls = data.get("syscalls") or []
    if not isinstance(calls, list):
        raise SeccompError(f"{source}: syscalls must be a list")
    rules = []
    for i, c in enumerate(calls):
        where = f"{source}: syscalls[{i}]"
        if not isinstance(c, dict):
            raise SeccompError(f"{where}: expected an object")
        names = _names(c.get("names"), f"{where}.names")
        if c.get("name"):  # the old single-name form
            names += (str(c["name"]),)
        if not names:
            raise SeccompError(f"{where}: no syscall names")
        action = _action(c.get("action"), c.get("errnoRet"), default_errno if isinstance(default_errno, int) else EPERM, f"{where}.action")
        args = []
        for j, a in enumerate(c.get("args") or []):
            aw = f"{where}.args[{j}]"
            if not isinstance(a, dict):
                raise SeccompError(f"{aw}: expected an object")
            index = a.get("index")
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= 5:
                raise SeccompError(f"{aw}: index must be 0 to 5, got {index!r}")
            if a.get("op") not in OPS:
                raise SeccompError(f"{aw}: unsupported op {a.get('op')!r} (one of {', '.join(OPS)})")
            args.append(Arg(index, _int(a.get("value", 0), aw), _int(a.get("valueTwo", 0), aw), a["op"]))
        inc, exc = c.get("includes") or {}, c.get("excludes") or {}
        if not isinstance(inc, dict) or not isinstance(exc, dict):
            raise SeccompError(f"{where}: includes and excludes must be objects")
        rules.append(Rule(
            names=names, action=action, args=tuple(args),
            caps_in=_names(inc.get("caps"), f"{where}.includes.caps"),
            caps_out=_names(exc.get("caps"), f"{where}.excludes.caps"),
            arches_in=_names(inc.get("arches"), f"{where}.includes.arches"),
            arches_out=_names(exc.get("arches"), f"{where}.excludes.arches"),
            min_kernel=_kernel(inc.get("minKernel"), f"{where}.includes.minKernel")))
    return Profile(default, tuple(rules))


def load_profile_file(path: str) -> dict:
    """The JSON object of a profile file (``--security-opt seccomp=PATH``), checked by
    :func:`parse_profile`; the object is what a container's spec keeps."""
    try:
        with open(path, "rb") as f:
            raw = f.read(4 << 20)
    except OSError as e:
        raise SeccompError(f"cannot read seccomp profile {path}: {e.strerror}") from None
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise SeccompError(f"seccomp profile {path} is not valid JSON: {e}") from None
    parse_profile(data, f"seccomp profile {path}")
    return data


# --- compiling ---------------------------------------------------------------------------

def _applies(rule: Rule, arch: str, caps: frozenset[str], kernel: tuple[int, ...]) -> bool:
    cap_names = {f"CAP_{c}" for c in caps}
    goarch = GO_ARCH[arch]
    if rule.caps_out and any(c.upper() in cap_names for c in rule.caps_out):
        return False
    if rule.caps_in and not all(c.upper() in cap_names for c in rule.caps_in):
        return False
    if rule.arches_out and goarch in rule.arches_out:
        return False
    if rule.arches_in and goarch not in rule.arches_in:
        return False
    return not (rule.min_kernel and kernel and kernel < rule.min_kernel)


def syscall_rules(profile: Profile, arch: str, caps: frozenset[str] | set[str],
                  kernel: tuple[int, ...] = ()) -> dict[int, list[tuple[tuple[Arg, ...], int]]]:
    """syscall number -> its (conditions, answer) list in order, for this architecture and
    capability set. The first rule whose conditions hold answers; a rule without conditions
    ends the list (it answers every call that got that far)."""
    nrs = TABLES[arch]
    caps = frozenset(caps)
    out: dict[int, list[tuple[tuple[Arg, ...], int]]] = {}
    for rule in profile.rules:
        if not _applies(rule, arch, caps, kernel):
            continue
        for name in rule.names:
            nr = nrs.get(name)
            if nr is None:
                continue
            lst = out.setdefault(nr, [])
            if lst and not lst[-1][0]:
                continue  # already answered unconditionally
            lst.append((rule.args, rule.action))
    return out


class _Asm:
    def __init__(self) -> None:
        self.prog: list[tuple] = []
        self.n = 0

    def label(self) -> str:
        self.n += 1
        return f"L{self.n}"

    def emit(self, code: int, jt: int | str = 0, jf: int | str = 0, k: int = 0) -> None:
        self.prog.append((code, jt, jf, k))

    def mark(self, name: str) -> None:
        self.prog.append(("label", name))


def _compare(a: _Asm, arg: Arg, fail: str) -> None:
    """Code that falls through when ``arg`` holds and jumps to ``fail`` otherwise."""
    lo_off, hi_off = 16 + 8 * arg.index, 20 + 8 * arg.index
    v, v2 = arg.value, arg.value_two
    hi, lo = v >> 32, v & 0xFFFFFFFF
    ok = a.label()
    op = arg.op
    if op == "SCMP_CMP_MASKED_EQ":
        a.emit(LD_W_ABS, k=hi_off)
        a.emit(ALU_AND_K, k=hi)
        a.emit(JEQ_K, 0, fail, v2 >> 32)
        a.emit(LD_W_ABS, k=lo_off)
        a.emit(ALU_AND_K, k=lo)
        a.emit(JEQ_K, 0, fail, v2 & 0xFFFFFFFF)
    elif op == "SCMP_CMP_EQ":
        a.emit(LD_W_ABS, k=hi_off)
        a.emit(JEQ_K, 0, fail, hi)
        a.emit(LD_W_ABS, k=lo_off)
        a.emit(JEQ_K, 0, fail, lo)
    elif op == "SCMP_CMP_NE":
        a.emit(LD_W_ABS, k=hi_off)
        a.emit(JEQ_K, 0, ok, hi)
        a.emit(LD_W_ABS, k=lo_off)
        a.emit(JEQ_K, fail, 0, lo)
    elif op in ("SCMP_CMP_GT", "SCMP_CMP_GE"):
        a.emit(LD_W_ABS, k=hi_off)
        a.emit(JGT_K, ok, 0, hi)
        a.emit(JEQ_K, 0, fail, hi)
        a.emit(LD_W_ABS, k=lo_off)
        a.emit(JGT_K if op == "SCMP_CMP_GT" else JGE_K, 0, fail, lo)
    else:  # LT, LE
        a.emit(LD_W_ABS, k=hi_off)
        a.emit(JGT_K, fail, 0, hi)
        a.emit(JEQ_K, 0, ok, hi)
        a.emit(LD_W_ABS, k=lo_off)
        a.emit(JGE_K if op == "SCMP_CMP_LT" else JGT_K, fail, 0, lo)
    a.mark(ok)


def compile_profile(profile: Profile, arch: str, caps: frozenset[str] | set[str],
                    kernel: tuple[int, ...] = ()) -> bytes:
    """The BPF program of ``profile`` for ``arch`` and a container's capability names."""
    if arch not in AUDIT_ARCH:
        raise SeccompError(f"no seccomp filter for architecture {arch}")
    table = syscall_rules(profile, arch, caps, kernel)
    a = _Asm()
    a.emit(LD_W_ABS, k=4)
    a.emit(JEQ_K, 1, 0, AUDIT_ARCH[arch])
    a.emit(RET_K, k=profile.default)  # a foreign ABI (i386, x32 by arch, arm32)
    a.emit(LD_W_ABS, k=0)
    if arch == "x86_64":
        a.emit(JGE_K, 0, 1, X32_SYSCALL_BIT)
        a.emit(RET_K, k=profile.default)  # the x32 ABI
    # Syscalls with one unconditional action other than the default, in runs of consecutive
    # numbers with the same action, are tested as ranges (JGE/JGT/RET, three instructions a
    # run, not two a syscall): Docker's profile allows ~300 syscalls in ~35 runs, and the
    # program the kernel checks and compiles at every container start (~1.1 ms -> ~0.5 ms
    # here) and runs at every syscall shrinks from ~800 instructions to ~270.
    run: list[int] = []  # [first, last, action]

    def flush() -> None:
        if not run:
            return
        lo, hi, action = run
        if lo == hi:
            a.emit(JEQ_K, 0, 1, lo)
        else:
            a.emit(JGE_K, 0, 2, lo)
            a.emit(JGT_K, 1, 0, hi)
        a.emit(RET_K, k=action)
        run.clear()

    for nr in sorted(table):
        rules = table[nr]
        if len(rules) == 1 and not rules[0][0]:
            action = rules[0][1]
            if action == profile.default:
                flush()  # a gap: the final return gives it the default
            elif run and nr == run[1] + 1 and action == run[2]:
                run[1] = nr
            else:
                flush()
                run[:] = [nr, nr, action]
            continue
        flush()
        end = a.label()
        a.emit(JEQ_K, 1, 0, nr)
        a.emit(JA, k=end)  # resolved to a 32-bit offset
        for conds, action in rules:
            nxt = a.label()
            for arg in conds:
                _compare(a, arg, nxt)
            a.emit(RET_K, k=action)
            a.mark(nxt)
        a.emit(RET_K, k=profile.default)
        a.mark(end)  # not this syscall: the accumulator still holds its number
    flush()
    a.emit(RET_K, k=profile.default)
    prog = assemble(a.prog)
    if len(prog) // 8 > 4096:
        raise SeccompError(f"the seccomp profile needs {len(prog) // 8} BPF instructions; "
                           "the kernel takes at most 4096")
    return prog


def assemble(program: list[tuple]) -> bytes:
    """Assemble ``(op, jt, jf, k)`` tuples and ``("label", name)`` markers. jt/jf may name a
    label (forward jumps of at most 255); a ``JA`` may name one in ``k``."""
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

        def rel(t, limit=255):
            if isinstance(t, str):
                off = labels[t] - pc - 1
                if not 0 <= off <= limit:
                    raise SeccompError(f"seccomp: jump to {t} out of range ({off})")
                return off
            return t

        if code == JA:
            k = rel(k, 0xFFFFFFFF)
        out += struct.pack("<HBBI", code, rel(jt), rel(jf), k & 0xFFFFFFFF)
        pc += 1
    return bytes(out)


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
        elif code == ALU_AND_K:
            acc &= k
        elif code == RET_K:
            return k
        elif code == JA:
            pc += k
        elif code in (JEQ_K, JGT_K, JGE_K, JSET_K):
            cond = {JEQ_K: acc == k, JGT_K: acc > k, JGE_K: acc >= k, JSET_K: bool(acc & k)}[code]
            pc += jt if cond else jf
        else:
            raise SeccompError(f"unknown opcode {code:#x}")
        pc += 1
    raise SeccompError("program fell off the end")


def kernel_version(release: str | None = None) -> tuple[int, ...]:
    """``6.1.0-18-amd64`` -> (6, 1, 0)."""
    release = release or os.uname().release
    out = []
    for part in release.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        if not digits:
            break
        out.append(int(digits))
    return tuple(out)


_default_parsed: Profile | None = None


def _default() -> Profile:
    global _default_parsed
    if _default_parsed is None:
        _default_parsed = parse_profile(DEFAULT_PROFILE, "the default seccomp profile")
    return _default_parsed


@lru_cache(maxsize=8)
def _default_program(arch: str, caps: frozenset[str], kernel: tuple[int, ...]) -> bytes:
    return compile_profile(_default(), arch, caps, kernel)


def build_filter(arch: str, caps: frozenset[str] | set[str], profile: dict | None = None,
                 kernel: tuple[int, ...] | None = None) -> bytes:
    """The filter for ``arch`` ("x86_64" / "aarch64") and a container's capability names:
    Docker's default profile, or ``profile`` (a Docker-format JSON object)."""
    kernel = kernel_version() if kernel is None else kernel
    if profile is None:
        return _default_program(arch, frozenset(caps), kernel)
    return compile_profile(parse_profile(profile), arch, frozenset(caps), kernel)


def denied_syscalls(caps: frozenset[str] | set[str], arch: str = "x86_64") -> list[str]:
    """The syscalls of ``arch`` the default profile refuses (whatever their arguments) to a
    container holding ``caps``."""
    table = syscall_rules(_default(), arch, caps, kernel_version())
    return sorted(n for n, nr in TABLES[arch].items() if nr not in table)


COMPILER_VERSION = "3"  # part of the cache key: bump when compiled programs change


def program_file(cache_dir: str, arch: str, caps: frozenset[str] | set[str],
                 profile: dict | None = None) -> str:
    """The path of the compiled program for this profile, architecture, capability set and
    kernel, compiled once per node into ``cache_dir`` (a container start then only reads it)."""
    import hashlib

    kernel = kernel_version()
    key = json.dumps([COMPILER_VERSION, arch, sorted(caps), list(kernel), profile],
                     sort_keys=True, separators=(",", ":"))
    path = os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest()[:32] + ".bpf")
    if not os.path.exists(path):
        prog = build_filter(arch, caps, profile, kernel)
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.{_thread.get_ident()}.tmp"  # the agent starts several at once
        with open(tmp, "wb") as f:
            f.write(prog)
        os.replace(tmp, path)
    return path


def install(arch: str, caps: frozenset[str], profile: dict | None = None) -> None:
    from stackctl.runtime.containers import linux

    linux.seccomp_set_filter(build_filter(arch, caps, profile))
