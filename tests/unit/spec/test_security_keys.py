"""Stack files: ``security_opt`` is carried out (checked at load, profile paths made absolute)
and net.* sysctls are refused for services without their own network namespace."""

from __future__ import annotations

from spec_models_help import build, errors, service, svc_text


def test_net_sysctl_refused_with_host_network():
    text = svc_text("""
        network_mode: host
        sysctls:
          net.ipv4.tcp_keepalive_probes: 8
    """)
    (line,) = errors(text)
    assert 'sysctl "net.ipv4.tcp_keepalive_probes" not allowed in host network namespace' in line
    assert line.startswith("stack.yml:") and "services.web.sysctls" in line


def test_net_sysctl_refused_with_a_shared_network():
    text = "services:\n  db:\n    image: x\n  web:\n    image: x\n    network_mode: service:db\n" \
           "    sysctls: [net.core.somaxconn=1024]\n"
    assert any("not allowed in a network namespace shared" in e for e in errors(text))


def test_net_sysctl_fine_on_own_network_and_kernel_sysctl_with_host():
    assert service(svc_text("sysctls: {net.core.somaxconn: 1024}")).sysctls
    assert service(svc_text("network_mode: host\nsysctls: {kernel.shmmax: 1000}")).sysctls


def test_security_opt_carried_out():
    s = service(svc_text("security_opt: [seccomp:./prof.json, no-new-privileges:true, "
                         "apparmor=unconfined]"), project_dir="/srv/proj")
    assert s.security_opt == ["seccomp:/srv/proj/prof.json", "no-new-privileges:true",
                              "apparmor=unconfined"]
    _, _, warnings = build(svc_text("security_opt: [seccomp=unconfined]"))
    assert not any("security_opt" in str(w) for w in warnings)


def test_bad_security_opt_is_a_located_error():
    (line,) = errors(svc_text("security_opt: [label=disable]"))
    assert "services.web.security_opt" in line and "label is not supported" in line
