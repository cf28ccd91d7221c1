#!/usr/bin/env bash
# An arm64 Debian root with gcc, for the mixed-architecture cluster tests: made once with
# debootstrap (through qemu-user's binfmt handler, registered here when missing) and kept outside
# the repository, at $KILN_ARM64_ROOT (default /var/cache/kiln-test/arm64-root). Needs root and
# Debian's archive; the first run takes about ten minutes.
set -euo pipefail
root="${KILN_ARM64_ROOT:-/var/cache/kiln-test/arm64-root}"
[ -x "$root/usr/bin/gcc" ] && [ -e "$root/.kiln-complete" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "fetch-arm64-root: needs root (debootstrap)" >&2
  exit 1
fi
# binfmt_misc: aarch64 programs run through qemu-aarch64-static (Debian's qemu-user-static).
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi
rm -rf "$root.tmp"
mkdir -p "$(dirname "$root")"
debootstrap --arch=arm64 --variant=minbase --include=gcc,g++,libc6-dev bookworm "$root.tmp" \
  http://deb.debian.org/debian >"$(dirname "$root")/debootstrap.log" 2>&1 || {
  tail -20 "$(dirname "$root")/debootstrap.log" >&2
  exit 1
}
touch "$root.tmp/.kiln-complete"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "fetch-arm64-root: $root"
