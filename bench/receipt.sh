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
BLOBS=${BENCH_BLOBS:-100000}
IMAGES=${BENCH_IMAGES:-3000}
REPOS=${BENCH_REPOS:-300}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 zstd find du sort
find_airlift
start_work airlift-receipt results.tsv
CAN_DROP=0
if { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then CAN_DROP=1; fi

ROOT=$WORK/root
say "installing a registry root in $ROOT"
"$AIRLIFT" install --root "$ROOT" --hostname localhost --no-start --json >"$LOGS/install.json"
STORE=$(python3 -c 'import json,os,sys; c=json.load(open(sys.argv[1]+"/config.json")); s=c.get("storage","storage"); print(s if os.path.isabs(s) else os.path.join(sys.argv[1], s))' "$ROOT")

say "generating $BLOBS blobs and $IMAGES manifests in $REPOS repositories under $STORE"
t0=$EPOCHREALTIME
python3 - "$STORE" "$BLOBS" "$IMAGES" "$REPOS" <<'EOF'
# The storage layout of src/registry/storage.rs: blobs/sha256/<hex>, and per repository
# _links/<hex> (empty), _manifests/revisions/<hex> ({"mediaType","size"}), _manifests/tags/<tag>.
import hashlib, json, os, random, sys
store, blobs, images, repos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rng = random.Random(13)
bdir = os.path.join(store, "blobs", "sha256")
os.makedirs(bdir, exist_ok=True)
def put(data):
    hexd = hashlib.sha256(data).hexdigest()
    with open(os.path.join(bdir, hexd), "wb") as f:
        f.write(data)
    return hexd
def touch(path, data=b""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
pool = [(put(rng.randbytes(rng.randint(100, 2000))), 0) for _ in range(blobs)]
pool = [(h, os.path.getsize(os.path.join(bdir, h))) for h, _ in pool]
per = blobs // images
for i in range(images):
    repo = f"ns{i % repos:03d}/app"
    mine = pool[i * per:(i + 1) * per] if i < images - 1 else pool[i * per:]
    config, layers = mine[0], mine[1:]
    desc = lambda mt, b: {"mediaType": mt, "digest": "sha256:" + b[0], "size": b[1]}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", l) for l in layers],
    }).encode()
    m = put(manifest)
    rdir = os.path.join(store, "repositories", repo)
    for h, _ in mine:
        touch(os.path.join(rdir, "_links", h))
    touch(os.path.join(rdir, "_links", m))
    rev = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(manifest)}
    touch(os.path.join(rdir, "_manifests", "revisions", m), json.dumps(rev).encode())
    touch(os.path.join(rdir, "_manifests", "tags", f"v{i // repos}"), f"sha256:{m}\n".encode())
EOF
say "generated in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s: $(du -sh "$STORE" | cut -f1)"

# run NAME CACHE CMD...: time CMD with its peak RSS: once after dropping the page cache
# (cold), or three times (warm; the fastest time and the highest RSS are kept).
run() {
    local name=$1 cache=$2 best="" rss=0 r runs=3; shift 2
    if [[ $cache == cold ]]; then
        ((CAN_DROP)) || { say "  $name: cold skipped (not root)"; return; }
        runs=1
    fi
    for ((r = 1; r <= runs; r++)); do
        sync
        if [[ $cache == cold ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
        timed "$name-$cache-$r" "$@"
        if [[ -z $best ]] || awk -v a="$T_SEC" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$T_SEC; fi
        if ((T_RSS > rss)); then rss=$T_RSS; fi
    done
    say "  $name ($cache): ${best}s, peak RSS $((rss / 1024)) MiB"
    printf '%s\t%s\t%s\t%s\n' "$name" "$cache" "$best" "$rss" >>"$RESULTS"
}

OUT=$WORK/site.receipt
for cache in cold warm; do
    run "airlift-receipt" "$cache" "$AIRLIFT" receipt --root "$ROOT" --out "$OUT"
    run "find-count" "$cache" bash -c 'find "$1" -type f | wc -l' _ "$STORE"
    run "du" "$cache" du -sb "$STORE"
    run "shell-way" "$cache" bash -c \
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
printf '%-16s %-5s %9s %9s\n' command cache seconds "RSS MiB"
while IFS=$'\t' read -r name cache sec rss; do
    printf '%-16s %-5s %9s %9d\n' "$name" "$cache" "$sec" "$((rss / 1024))"
done <"$RESULTS"
