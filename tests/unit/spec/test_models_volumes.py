"""Service volumes (short and long: volume, bind, tmpfs) and top-level volumes."""

from __future__ import annotations

import pytest
from spec_models_help import errors, service, stack, svc_text

TOP = "volumes:\n  data:\n"


def mounts(*items, top=TOP, **kwargs) -> list[dict]:
    body = "volumes:\n" + "".join(f"  - {item}\n" for item in items)
    return [m.dump() for m in service(svc_text(body) + top, **kwargs).volumes]


def test_short_named_volume():
    assert mounts("data:/data") == [{"type": "volume", "source": "data", "target": "/data"}]
    assert mounts("data:/data:ro,nocopy") == [{"type": "volume", "source": "data",
                                               "target": "/data", "read_only": True,
                                               "volume": {"nocopy": True}}]


def test_short_anonymous_volume():
    assert mounts("/cache") == [{"type": "volume", "target": "/cache"}]


def test_short_bind_is_made_absolute_and_created():
    out = mounts("./src:/src:ro,z", "~/cfg:/cfg", "/etc/hosts:/h:rshared",
                 environ={"HOME": "/home/u"})
    assert out[0] == {"type": "bind", "source": "/srv/proj/src", "target": "/src",
                      "read_only": True, "bind": {"create_host_path": True, "selinux": "z"}}
    assert out[1]["source"] == "/home/u/cfg"
    assert out[2]["bind"] == {"propagation": "rshared", "create_host_path": True}


def test_long_syntax():
    out = mounts("{type: tmpfs, target: /run, tmpfs: {size: 64m, mode: '1777'}}",
                 "{type: volume, source: data, target: /d, volume: {subpath: sub}}",
                 "{type: bind, source: /x, target: /x, read_only: true}")
    assert out[0] == {"type": "tmpfs", "target": "/run",
                      "tmpfs": {"size": 64 * 1024**2, "mode": 0o1777}}
    assert out[1]["volume"] == {"subpath": "sub"}
    assert out[2] == {"type": "bind", "source": "/x", "target": "/x", "read_only": True}


@pytest.mark.parametrize("item,message", [
    ("data:rel", "expected an absolute path in the container"),
    ("data:/d:bogus", 'invalid volume mode "bogus"'),
    ("./x:/x:nocopy", "nocopy applies to volumes"),
    ("a:b:c:d", "expected [SOURCE:]TARGET[:MODE]"),
    ("{type: bind, target: /x}", "a bind mount needs a source"),
    ("{type: tmpfs, source: a, target: /x}", "a tmpfs mount takes no source"),
    ("{type: volume, source: data, target: /x, bind: {propagation: shared}}",
     "bind options given for a mount of type volume"),
    ("{type: weird, target: /x}", "expected one of: volume, bind, tmpfs"),
    ("{target: /x}", "required key is missing"),
])
def test_invalid_mounts(item, message):
    errs = errors(svc_text(f"volumes:\n  - {item}\n") + TOP)
    assert len(errs) == 1 and message in errs[0], errs


def test_undefined_volume_is_an_error():
    errs = errors(svc_text("volumes: [nope:/data]"))
    assert errs == ["stack.yml:4:15: services.web.volumes[0]: undefined volume nope "
                    "(declare it under the top-level volumes: key)"]


def test_top_level_volumes():
    st = stack(svc_text("volumes: [a:/a, b:/b, c:/c]") + """
volumes:
  a:
  b: {external: true}
  c:
    name: custom
    driver: local
    driver_opts: {type: tmpfs, device: tmpfs}
    labels: [x=1]
    x-note: kept
""")
    assert st.volumes["a"].name == "proj_a"
    assert st.volumes["b"].name == "b" and st.volumes["b"].external
    assert st.volumes["c"].dump() == {"name": "custom", "driver": "local",
                                      "driver_opts": {"type": "tmpfs", "device": "tmpfs"},
                                      "labels": {"x": "1"}, "x-note": "kept"}


def test_external_volume_takes_no_driver():
    errs = errors("volumes:\n  v: {external: true, driver: local}\nservices: {}\n")
    assert 'an external volume takes no "driver"' in errs[0]


def test_volumes_from_and_tmpfs():
    svc = service(svc_text("tmpfs: /run\nvolumes_from: [db:ro]") +
                  "  db:\n    image: busybox\n")
    assert svc.tmpfs == ["/run"]
    assert svc.volumes_from == ["db:ro"]
