"""The busybox base image, built offline from Debian's busybox-static.

``stackctl image build-busybox`` (hidden) stages a build context — ``rootfs/`` with the static
busybox, its applet links, a minimal /etc/passwd and /etc/group and /tmp (1777) — next to
:data:`DOCKERFILE` (the same text as ``examples/images/busybox/Dockerfile``) and builds it with
the ordinary builder, so the base image is a real built image with history.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from typing import Callable

from stackctl.errors import StackctlError
from stackctl.paths import NodePaths
from stackctl.runtime.images.store import Image, ImageStore

DOCKERFILE = """\
# The busybox base image of stackctl's examples and tests, built offline from Debian's
# busybox-static. The context holds rootfs/: bin/busybox and its applet links, a minimal
# /etc/passwd and /etc/group, /tmp (1777). Make it and build with one command:
#   stackctl image build-busybox            (tags stackctl/busybox:latest)
# or by hand: examples/images/busybox/prepare.sh CTX && stackctl image build -t NAME CTX
FROM scratch
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CMD ["sh"]
"""

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def find_busybox() -> str:
    for cand in (shutil.which("busybox"), "/bin/busybox", "/usr/bin/busybox"):
        if cand and os.path.isfile(cand):
            return cand
    raise StackctlError("busybox not found", hint="apt-get install busybox-static")


def make_rootfs(dest: str, busybox: str) -> None:
    """Write the base image's root filesystem into ``dest`` (which must not exist)."""
    out = subprocess.run([busybox, "--list"], capture_output=True, text=True)
    if out.returncode != 0 or "sh" not in out.stdout.split():
        raise StackctlError(f"{busybox} does not list its applets; is it Debian's busybox-static?",
                            hint="apt-get install busybox-static")
    for d in ("bin", "etc", "tmp", "root", "proc", "sys", "dev", "var"):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    os.chmod(os.path.join(dest, "root"), 0o700)
    shutil.copy2(busybox, os.path.join(dest, "bin", "busybox"))
    os.chmod(os.path.join(dest, "bin", "busybox"), 0o755)
    for name in out.stdout.split():
        if name != "busybox":
            os.symlink("busybox", os.path.join(dest, "bin", name))
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write(PASSWD)
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write(GROUP)


def make_busybox_image(paths: NodePaths, store: ImageStore, *, tag: str = "stackctl/busybox:latest",
                       busybox: str | None = None, log: Callable[[str], None] = print) -> Image:
    from stackctl.runtime.images.build.builder import BuildOptions, build

    busybox = busybox or find_busybox()
    os.makedirs(store.tmp_dir, exist_ok=True)
    ctx = tempfile.mkdtemp(dir=store.tmp_dir, prefix="busybox-ctx-")
    try:
        make_rootfs(os.path.join(ctx, "rootfs"), busybox)
        with open(os.path.join(ctx, "Dockerfile"), "w") as f:
            f.write(DOCKERFILE)
        return build(paths, store, BuildOptions(context=ctx, tags=[tag]), log=log)
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
