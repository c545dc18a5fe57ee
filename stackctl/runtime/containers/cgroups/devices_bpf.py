"""Device access on cgroup v2: the allow-list of :data:`v1.DEVICE_ALLOW` as an eBPF program
(BPF_PROG_TYPE_CGROUP_DEVICE) attached to the container's cgroup, as runc and Docker do.
cgroup v2 has no ``devices.allow`` file; without this program CAP_MKNOD (a default
capability) could make a node for the host's disk and open it.

:func:`program` is pure (rules in, instructions out); :func:`attach` loads it with ``bpf(2)``
and attaches it to a cgroup directory (``BPF_F_ALLOW_MULTI``, so programs of the host's
service manager on parent cgroups still apply: a device must pass all of them). The program
stays attached as long as the cgroup exists; nothing needs to be kept open.

Context (``struct bpf_cgroup_dev_ctx``): u32 access_type (low 16 bits: 1 block, 2 char; high
16 bits: 1 mknod, 2 read, 4 write), u32 major, u32 minor. Answer 1 allows, 0 denies (EPERM).
"""

from __future__ import annotations

import ctypes
import os
import struct

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
SYS_BPF = {"x86_64": 321, "aarch64": 280}

_TYPES = {"a": 0, "b": 1, "c": 2}
_ACCESS = {"m": 1, "r": 2, "w": 4}

# eBPF opcodes
_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_MOV64_REG = 0xBF
_MOV64_IMM = 0xB7
_AND64_IMM = 0x57
_RSH64_IMM = 0x77
_JNE_IMM = 0x55
_EXIT = 0x95


def _ins(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def parse_rule(rule: str) -> tuple[int, int, int, int]:
    """``"c 1:3 rwm"`` -> (type, major, minor, access); ``*`` is -1."""
    kind, numbers, access = rule.split()
    major, minor = numbers.split(":")
    acc = 0
    for ch in access:
        acc |= _ACCESS[ch]
    return (_TYPES[kind], -1 if major == "*" else int(major), -1 if minor == "*" else int(minor), acc)


def program(rules: tuple[str, ...] | list[str]) -> bytes:
    """The instructions allowing exactly ``rules`` (devices cgroup syntax), denying the rest."""
    out = [
        _ins(_LDX_W, dst=2, src=1, off=0),  # r2 = access_type
        _ins(_MOV64_REG, dst=3, src=2),  # r3 = type
        _ins(_AND64_IMM, dst=3, imm=0xFFFF),
        _ins(_RSH64_IMM, dst=2, imm=16),  # r2 = access
        _ins(_LDX_W, dst=4, src=1, off=4),  # r4 = major
        _ins(_LDX_W, dst=5, src=1, off=8),  # r5 = minor
    ]
    for rule in rules:
        kind, major, minor, acc = parse_rule(rule)
        block = []
        if kind:
            block.append(("jne", 3, kind))
        block.append(("mask", 0, acc))
        if major >= 0:
            block.append(("jne", 4, major))
        if minor >= 0:
            block.append(("jne", 5, minor))
        # length of the block: jne = 1, mask = 3 (mov, and, jne); then mov r0 1, exit
        length = sum(3 if b[0] == "mask" else 1 for b in block) + 2
        pos = 0
        for what, reg, imm in block:
            if what == "jne":
                pos += 1
                out.append(_ins(_JNE_IMM, dst=reg, off=length - pos, imm=imm))
            else:
                out.append(_ins(_MOV64_REG, dst=6, src=2))
                out.append(_ins(_AND64_IMM, dst=6, imm=~imm))
                pos += 3
                out.append(_ins(_JNE_IMM, dst=6, off=length - pos, imm=0))
        out.append(_ins(_MOV64_IMM, dst=0, imm=1))
        out.append(_ins(_EXIT))
    out.append(_ins(_MOV64_IMM, dst=0, imm=0))
    out.append(_ins(_EXIT))
    return b"".join(out)


def evaluate(prog: bytes, kind: str, major: int, minor: int, access: str) -> bool:
    """Run ``prog`` on one access (a reference interpreter of the opcodes above)."""
    acc = 0
    for ch in access:
        acc |= _ACCESS[ch]
    ctx = struct.pack("<III", (acc << 16) | _TYPES[kind], major, minor)
    regs = [0] * 11
    ins = [struct.unpack_from("<BBhi", prog, i) for i in range(0, len(prog), 8)]
    pc = 0
    mask = (1 << 64) - 1
    while True:
        code, regbyte, off, imm = ins[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if code == _LDX_W:
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif code == _MOV64_REG:
            regs[dst] = regs[src]
        elif code == _MOV64_IMM:
            regs[dst] = imm & mask
        elif code == _AND64_IMM:
            regs[dst] &= imm & mask
        elif code == _RSH64_IMM:
            regs[dst] >>= imm
        elif code == _JNE_IMM:
            if regs[dst] != imm & mask:
                pc += off
        elif code == _EXIT:
            return regs[0] == 1
        else:
            raise ValueError(f"unknown opcode {code:#x}")


class DeviceFilterError(OSError):
    pass


def _bpf(cmd: int, attr: bytes) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, len(attr))
    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise DeviceFilterError(38, f"bpf: unsupported architecture {os.uname().machine}")
    rc = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if rc < 0:
        err = ctypes.get_errno()
        raise DeviceFilterError(err, os.strerror(err))
    return rc


def attach(cgroup_dir: str, rules: tuple[str, ...] | list[str]) -> None:
    """Load the program of ``rules`` and attach it to ``cgroup_dir`` (a cgroup v2 directory)."""
    code = program(rules)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")  # any license: no GPL-only helper used
    attr = struct.pack("<IIQQIIQII16sII", BPF_PROG_TYPE_CGROUP_DEVICE, len(code) // 8,
                       ctypes.addressof(insns), ctypes.addressof(license_), 0, 0, 0, 0, 0,
                       b"stackctl_dev", 0, BPF_CGROUP_DEVICE)
    attr += b"\0" * (128 - len(attr))
    try:
        prog_fd = _bpf(BPF_PROG_LOAD, attr)
    except DeviceFilterError as e:
        raise DeviceFilterError(e.errno, f"loading the device filter: {e.strerror}") from None
    try:
        cg_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(BPF_PROG_ATTACH, struct.pack("<IIIII", cg_fd, prog_fd, BPF_CGROUP_DEVICE,
                                              BPF_F_ALLOW_MULTI, 0) + b"\0" * 108)
        finally:
            os.close(cg_fd)
    except DeviceFilterError as e:
        raise DeviceFilterError(e.errno, f"attaching the device filter to {cgroup_dir}: {e.strerror}") from None
    finally:
        os.close(prog_fd)
