#!/usr/bin/env bash
# Builds edgewire with boringtun's AEAD taken out (seal: a zero tag; open: no check), to
# measure the design's ceiling without crypto on this machine (docs/PERFORMANCE.md, "The
# ceiling without crypto"). A measurement tool only: the result encrypts nothing and
# accepts any tag, so it only talks to itself. Prints the executable's path.
#
#   benches/ceiling/build-no-aead.sh
#   sudo target/release/edgewire bench --rounds 3 --no-floor --impl "$(benches/ceiling/build-no-aead.sh) tun -f {iface}"
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${TMPDIR:-/tmp}/edgewire-no-aead
version=$(awk '/^name = "boringtun"$/ { getline; gsub(/[^0-9.]/, ""); print; exit }' "$root/Cargo.lock")
src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "boringtun-$version" | head -n 1)
if [ -z "$src" ]; then
  (cd "$root" && cargo fetch >&2)
  src=$(find "${CARGO_HOME:-$HOME/.cargo}/registry/src" -maxdepth 2 -type d -name "boringtun-$version" | head -n 1)
fi
[ -n "$src" ] || { echo "boringtun $version not found in the cargo registry" >&2; exit 1; }
rm -rf "$work/boringtun" "$work/edgewire"
mkdir -p "$work/edgewire"
cp -r "$src" "$work/boringtun"
patch -s -d "$work/boringtun" -p1 < "$root/benches/ceiling/boringtun-no-aead.diff"
# A copy of the tree, because the patch rewrites Cargo.lock.
tar -C "$root" --exclude=./target --exclude=./.git -cf - . | tar -C "$work/edgewire" -xf -
(cd "$work/edgewire" && CARGO_TARGET_DIR="$work/target" cargo build --release --bin edgewire \
  --config "patch.crates-io.boringtun.path=\"$work/boringtun\"" >&2)
mkdir -p "$work/bin"
# Named apart from `edgewire`, so bench labels its column "edgewire-no-aead".
cp "$work/target/release/edgewire" "$work/bin/edgewire-no-aead"
echo "$work/bin/edgewire-no-aead"
