#!/usr/bin/env bash
# Runs the loom model-checking suite: release with debug assertions, its own target
# dir (loom's cfg changes every dependency's build), bounded preemptions.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom -C debug-assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-10000}"
echo "loom: LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS LOOM_MAX_BRANCHES=$LOOM_MAX_BRANCHES"
cargo test --release --target-dir target-loom --test 'loom_*' -- --test-threads=2 "$@"
