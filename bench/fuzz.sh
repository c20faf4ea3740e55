#!/usr/bin/env bash
# The reader's property test at length: many more seeded cases than CI runs.
#   bench/fuzz.sh [CASES] [SEED...]
# Each seed runs CASES cases (default 5000); a failure prints the seed and the case's
# mutations, and `AIRLIFT_FUZZ_SEED=SEED AIRLIFT_FUZZ_CASES=N cargo test --test tests --
# tamper::fuzz` reproduces it. Prints the time and peak memory figures of each seed.
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-5000}"
shift || true
seeds=("$@")
[ "${#seeds[@]}" -gt 0 ] || seeds=(1 2 3)
cargo test --test tests --no-run >/dev/null 2>&1 || cargo test --test tests --no-run
for seed in "${seeds[@]}"; do
    AIRLIFT_FUZZ_SEED="$seed" AIRLIFT_FUZZ_CASES="$cases" \
        cargo test -q --test tests -- tamper::fuzz --nocapture 2>&1 | grep -E "^(fuzz|figure)|panicked|FAILED|case [0-9]+" || true
done
