#!/usr/bin/env bash
# airlift day-2 benchmark (issue 14, must-show 5): `airlift gc --root` (dry run, then the
# real sweep) and `airlift fsck --root` on a generated registry root of BENCH_BLOBS blobs
# (default 100,000) of which BENCH_UNREFERENCED percent (default 10) belong to deleted
# images, with time and peak RSS, cold (page cache dropped: needs root) and warm, next to
# the floor: `find STORE -type f | wc -l` for gc's listing, `cat` of every blob for fsck's
# reading and `sha256sum` of every blob as the shell way of hashing them. See bench/README.md.
# Environment:
#   BENCH_BLOBS         blobs in the root (default 100000), configs and layers
#   BENCH_IMAGES        manifests, each tagged once (default 3000), over BENCH_REPOS repositories
#   BENCH_REPOS         repositories (default 300)
#   BENCH_UNREFERENCED  percent of the images deleted before gc (default 10)
#   BENCH_DIR           where the work directory is created (default /var/tmp)
#   BENCH_KEEP=1        keep the work directory
#   AIRLIFT             airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
UNREFERENCED=${BENCH_UNREFERENCED:-10}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 find xargs sha256sum cat
find_airlift
start_work airlift-day2 results.tsv
detect_drop

generated_root "$UNREFERENCED"
# What gc must sweep: every blob and the manifest of each deleted image (gen-root.py).
DELETED=$((IMAGES * UNREFERENCED / 100))
EXPECTED=$((DELETED * (BLOBS / IMAGES + 1)))

# swept NAME: blobs_swept of the gc run NAME's JSON document.
swept() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blobs_swept"])' "$LOGS/$1.out"; }

for cache in cold warm; do
    run_cache "gc-dry-run" "$cache" "$AIRLIFT" gc --root "$ROOT" --dry-run --json
    run_cache "find-count" "$cache" bash -c 'find "$1" -type f | wc -l' _ "$STORE"
done
got=$(swept gc-dry-run-warm-1)
[[ $got == "$EXPECTED" ]] || fail "gc --dry-run would sweep $got blobs; expected $EXPECTED"
# The real sweep changes the root: it runs once, cold when the page cache can be dropped.
SWEEP=once
if ((CAN_DROP)); then SWEEP=cold; fi
run_cache "gc" "$SWEEP" "$AIRLIFT" gc --root "$ROOT" --json
got=$(swept "gc-$SWEEP-1")
[[ $got == "$EXPECTED" ]] || fail "gc swept $got blobs; expected $EXPECTED"
run_cache "gc-again" once "$AIRLIFT" gc --root "$ROOT" --json
[[ $(swept gc-again-once-1) == 0 ]] || fail "a second gc swept blobs again"

if "$AIRLIFT" fsck --help >/dev/null 2>&1; then
    for cache in cold warm; do
        run_cache "fsck" "$cache" "$AIRLIFT" fsck --root "$ROOT" --json
        run_cache "cat-every-blob" "$cache" bash -c 'find "$1/blobs/sha256" -type f -print0 | xargs -0 cat >/dev/null' _ "$STORE"
        run_cache "sha256sum" "$cache" bash -c 'find "$1/blobs/sha256" -type f -print0 | xargs -0 sha256sum >/dev/null' _ "$STORE"
    done
else
    say "fsck skipped: this airlift has no fsck command ($AIRLIFT fsck --help failed)"
fi

echo
echo "gc and fsck of a root of $BLOBS blobs, $IMAGES manifests in $REPOS repositories; $DELETED images deleted ($EXPECTED blobs to sweep)"
((CAN_DROP)) || echo "(cold runs skipped: dropping the page cache needs root)"
print_results
