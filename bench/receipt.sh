#!/usr/bin/env bash
# airlift receipt benchmark: `airlift receipt --root` of a generated registry root of
# BENCH_BLOBS blobs (default 100,000), cold (page cache dropped: needs root) and warm, with
# the receipt's size and peak RSS, next to the floor (`find STORE -type f | wc -l`, `du`) and
# the shell way (`find … -printf '%s %f' | sort | zstd`). See bench/README.md.
# Environment:
#   BENCH_BLOBS     blobs in the root (default 100000), configs and layers
#   BENCH_IMAGES    manifests, each tagged once (default 3000), over BENCH_REPOS repositories
#   BENCH_REPOS     repositories (default 300)
#   BENCH_DIR       where the work directory is created (default /var/tmp)
#   BENCH_KEEP=1    keep the work directory
#   AIRLIFT         airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 zstd find du sort
find_airlift
start_work airlift-receipt results.tsv
detect_drop

generated_root 0

OUT=$WORK/site.receipt
for cache in cold warm; do
    run_cache "airlift-receipt" "$cache" "$AIRLIFT" receipt --root "$ROOT" --out "$OUT"
    run_cache "find-count" "$cache" bash -c 'find "$1" -type f | wc -l' _ "$STORE"
    run_cache "du" "$cache" du -sb "$STORE"
    run_cache "shell-way" "$cache" bash -c \
        'find "$1/blobs/sha256" -type f -printf "%s %f\n" | sort | zstd -q -o "$2" -f' _ "$STORE" "$WORK/shell.zst"
done
"$AIRLIFT" receipt --summary "$OUT" --json >"$LOGS/summary.json"
read -r got_blobs got_manifests got_tags < <(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); c=d["counts"]; print(c["blobs"], c["manifests"], c["tags"])' "$LOGS/summary.json")
[[ $got_blobs == "$BLOBS" && $got_manifests == "$IMAGES" && $got_tags == "$IMAGES" ]] ||
    fail "the receipt lists $got_blobs blobs, $got_manifests manifests, $got_tags tags; expected $BLOBS, $IMAGES, $IMAGES"
t0=$EPOCHREALTIME
"$AIRLIFT" receipt --summary "$OUT" >/dev/null
load=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", b - a }')

echo
echo "receipt of a root of $BLOBS blobs, $IMAGES manifests and tags in $REPOS repositories"
echo "receipt file: $(stat -c %s "$OUT") bytes (expanded $(zstd -dc "$OUT" | wc -c) bytes); shell way's file: $(stat -c %s "$WORK/shell.zst") bytes"
echo "loading it back (receipt --summary, checks every line): ${load}s"
print_results
