#!/bin/sh
# Make a build context for the busybox base image in DIR (default: ./busybox-context).
set -eu
ctx=${1:-busybox-context}
bb=${BUSYBOX:-$(command -v busybox || echo /bin/busybox)}
here=$(dirname "$0")
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp" "$ctx/rootfs/root" \
         "$ctx/rootfs/proc" "$ctx/rootfs/sys" "$ctx/rootfs/dev" "$ctx/rootfs/var"
chmod 1777 "$ctx/rootfs/tmp"
chmod 700 "$ctx/rootfs/root"
cp "$bb" "$ctx/rootfs/bin/busybox"
for a in $("$bb" --list); do
    [ "$a" = busybox ] || ln -sf busybox "$ctx/rootfs/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' > "$ctx/rootfs/etc/group"
cp "$here/Dockerfile" "$ctx/Dockerfile"
echo "$ctx"
