#!/usr/bin/env bash
# Fetches Debian source packages into bench/.work/src/<package>/ (once), for the differential test
# and the benchmark. Needs root for the deb-src entry; uses only Debian's own archive.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/.work/src"
mkdir -p "$dest"
need=()
for pkg in "$@"; do [ -d "$dest/$pkg" ] || need+=("$pkg"); done
[ ${#need[@]} -eq 0 ] && exit 0

if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  cat > /etc/apt/sources.list.d/kiln-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi
dl="$(mktemp -d)"
trap 'rm -rf "$dl"' EXIT
for pkg in "${need[@]}"; do
  (cd "$dl" && apt-get source -qq --download-only "$pkg" >/dev/null) || {
    apt-get update -qq && (cd "$dl" && apt-get source -qq --download-only "$pkg" >/dev/null)
  }
  orig=$(ls "$dl"/"${pkg}"_*.orig.tar.* | grep -v 'orig-' | head -1)
  mkdir -p "$dest/$pkg.tmp"
  tar -xf "$orig" -C "$dest/$pkg.tmp" --strip-components=1
  mv "$dest/$pkg.tmp" "$dest/$pkg"
  echo "fetched $pkg into $dest/$pkg"
done
