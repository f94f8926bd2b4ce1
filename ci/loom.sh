#!/usr/bin/env bash
# Runs the loom model-checking suite: release with debug assertions, its own target
# dir (loom's cfg changes every dependency's build), bounded preemptions.
#
# * tests/loom_table.rs — the extent table's seqlock and CAS protocol, with the
#   ordering mutants that must be caught; LOOM_MAX_PREEMPTIONS=3 (the models that
#   run unbounded set it themselves).
# * src/protocol/loom_models.rs — read/write/prefetch/compaction/verify/repair
#   machines against the cache and the reclaimer; LOOM_PROTOCOL_PREEMPTIONS=2
#   (3 takes about 4 minutes on 2 cores and found nothing more).
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTFLAGS="--cfg loom -C debug-assertions"
export LOOM_MAX_BRANCHES="${LOOM_MAX_BRANCHES:-10000}"
table_preemptions="${LOOM_MAX_PREEMPTIONS:-3}"
protocol_preemptions="${LOOM_PROTOCOL_PREEMPTIONS:-2}"

echo "loom (table): LOOM_MAX_PREEMPTIONS=$table_preemptions LOOM_MAX_BRANCHES=$LOOM_MAX_BRANCHES"
LOOM_MAX_PREEMPTIONS="$table_preemptions" \
    cargo test --release --target-dir target-loom --test 'loom_*' -- --test-threads=2 "$@"

echo "loom (protocol): LOOM_MAX_PREEMPTIONS=$protocol_preemptions"
LOOM_MAX_PREEMPTIONS="$protocol_preemptions" \
    cargo test --release --target-dir target-loom --lib loom_models -- --test-threads=2 "$@"
