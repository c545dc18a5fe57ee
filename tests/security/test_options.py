"""--security-opt as users pass it to `stackctl run` (Docker's forms): a custom seccomp
profile is carried out, `unconfined` and `no-new-privileges=false` loosen exactly what they
name, and AppArmor is refused with one line where the host has none."""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.root


def test_custom_seccomp_profile(sec_node, tmp_path):
    """Docker: `--security-opt seccomp=profile.json` replaces the default profile with the
    file's (read at create). Here: everything allowed but mkdir/mkdirat, which get EACCES."""
    prof = tmp_path / "p.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    p = sec_node("run", "--rm", "--security-opt", f"seccomp={prof}", "stackctl/busybox", "sh", "-c",
                 "mkdir /tmp/x; grep Seccomp: /proc/self/status")
    assert "Permission denied" in p.stderr, p.stderr
    assert "Seccomp:\t2" in p.stdout


def test_bad_profile_is_one_line(sec_node, tmp_path):
    """Docker: a profile that is not valid JSON fails the create with one message (125)."""
    prof = tmp_path / "bad.json"
    prof.write_text("{nope")
    p = sec_node("run", "--rm", "--security-opt", f"seccomp={prof}", "stackctl/busybox", "true")
    assert p.returncode == 125 and "not valid JSON" in p.stderr and "Traceback" not in p.stderr


def test_unconfined_and_no_new_privileges_false(sec_node):
    """Docker: `seccomp=unconfined` runs without a filter (capabilities still hold: unshare
    still needs CAP_SYS_ADMIN); `no-new-privileges=false` leaves no_new_privs off, with the
    default filter still installed."""
    p = sec_node("run", "--rm", "--security-opt", "seccomp=unconfined", "stackctl/busybox", "sh", "-c",
                 "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; unshare -n true && echo UNSHARED")
    assert "Seccomp:\t0" in p.stdout and "UNSHARED" not in p.stdout, p.stdout + p.stderr
    p = sec_node("run", "--rm", "--security-opt", "no-new-privileges=false", "stackctl/busybox",
                 "sh", "-c", "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status")
    assert "NoNewPrivs:\t0" in p.stdout and "Seccomp:\t2" in p.stdout, p.stdout + p.stderr


@pytest.mark.skipif(os.path.isdir("/sys/kernel/security/apparmor"), reason="this host has AppArmor")
def test_apparmor_refused_without_apparmor(sec_node):
    """Docker applies an AppArmor profile where the host has AppArmor. Without it, stackctl
    refuses `apparmor=PROFILE` with one line rather than run the container unconfined."""
    p = sec_node("run", "--rm", "--security-opt", "apparmor=docker-default", "stackctl/busybox", "true")
    assert p.returncode == 125
    assert "this host has no AppArmor" in p.stderr and "Traceback" not in p.stderr
