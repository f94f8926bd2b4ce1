#!/bin/bash
# Durable 8-writer throughput of two builds in one process (see main.rs).
#
#   lab/durable_ab/run.sh OLD_COMMIT [RUNS] [VERSION] [PROFILE]
#
# OLD_COMMIT: the build to compare against (e.g. 28cda7f); "new" is the working
# tree. VERSION (default 0.1.0, the shipped one) is the version the new tree is
# built under: the crate's version is part of its symbol hashes, so the code
# layout, and with it this workload's equilibrium, moves with it (BENCHMARKS.md,
# "Durability under disk faults"). PROFILE: "default" (16 codegen units, no LTO)
# or "lto" (fat LTO, one codegen unit).
set -euo pipefail
old=$1; runs=${2:-3}; version=${3:-0.1.0}; profile=${4:-default}
repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
work=${TMPDIR:-/tmp}/extentmeta-durable-ab
rm -rf "$work/old" "$work/new" "$work/harness"
mkdir -p "$work/old" "$work/new" "$work/harness/src"
git -C "$repo" archive "$old" | tar -x -C "$work/old"
(cd "$repo" && git ls-files -z | xargs -0 tar -c) | tar -x -C "$work/new"
# Two packages may share a name only at different versions.
sed -i 's/^version = .*/version = "0.0.1"/' "$work/old/Cargo.toml"
sed -i "s/^version = .*/version = \"$version\"/" "$work/new/Cargo.toml"
[ "$version" = 0.0.1 ] && { echo "VERSION must differ from 0.0.1 (the old build's)"; exit 2; }
cp "$repo/lab/durable_ab/main.rs" "$work/harness/src/main.rs"
{
  echo '[package]'
  echo 'name = "durable-ab"'
  echo 'version = "0.0.0"'
  echo 'edition = "2024"'
  echo 'publish = false'
  echo '[dependencies]'
  echo "old = { path = \"$work/old\", package = \"extentmeta\" }"
  echo "new = { path = \"$work/new\", package = \"extentmeta\" }"
  echo 'tempfile = "3"'
  echo 'libc = "0.2"'
  echo '[profile.release]'
  if [ "$profile" = lto ]; then echo 'lto = "fat"'; echo 'codegen-units = 1'; fi
} > "$work/harness/Cargo.toml"
cd "$work/harness"
CARGO_TARGET_DIR="$work/target" cargo build --quiet --release
echo "old $old, new = working tree as $version, profile $profile"
for _ in $(seq "$runs"); do "$work/target/release/durable-ab"; echo; done
