#!/usr/bin/env bash
# airlift disc images benchmark (issue 15, Build 2): `airlift pack --media dvd --iso` of a
# generated layout of BENCH_SIZE (default 4.7G: two DVDs), against the same pack without
# --iso (the images' cost is the difference), the shell way of making the same images
# from the same files (`xorriso -as mkisofs` and `genisoimage`, Joliet and Rock Ridge, one
# per disc), and the floor: `cat` of the same bytes into one file per disc. Cold (page
# cache dropped before each command: needs root) and warm, wall time and peak RSS; the
# images are checked to fit a DVD and to list the same files. See bench/README.md.
# Environment:
#   BENCH_SIZE      layout size (default 4.7G; more than two DVD volumes: two discs)
#   BENCH_MEDIA     --media preset (default dvd)
#   BENCH_DURABLE=1 the shell way's commands end in `sync`, inside their time (default 1;
#                   airlift fsyncs every image before it says done)
#   BENCH_WARM_RUNS warm runs of each command, the fastest kept (default 1: each writes GBs)
#   BENCH_DIR       where the work directory is created (default /var/tmp; the local disk)
#   BENCH_KEEP=1    keep the work directory
#   AIRLIFT         airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
SIZE=${BENCH_SIZE:-4.7G}
MEDIA=${BENCH_MEDIA:-dvd}
export BENCH_DURABLE=${BENCH_DURABLE:-1}
export BENCH_WARM_RUNS=${BENCH_WARM_RUNS:-1}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 xorriso genisoimage isoinfo cat
find_airlift
start_work airlift-iso results.tsv
detect_drop
use_layout "$WORK/layout"
"$AIRLIFT" keygen --out "$WORK/keys" --name site >/dev/null 2>&1
KEY=$WORK/keys/site.key

# The bundle without images (its loose files are what the shell way puts on discs), then
# with them; --force: each run replaces the last.
BUNDLE=$WORK/bundle
for cache in cold warm; do
    run_cache pack "$cache" "$AIRLIFT" pack --key "$KEY" --out "$BUNDLE" --name ocp --media "$MEDIA" --force --json "oci:$LAYOUT"
    run_cache pack-iso "$cache" "$AIRLIFT" pack --key "$KEY" --out "$WORK/iso" --name ocp --media "$MEDIA" --iso --force --json "oci:$LAYOUT"
done

# What airlift put on each disc, from its pack document: label, image, size, volumes.
python3 - "$LOGS/pack-iso-warm-1.out" >"$WORK/discs.txt" <<'PY'
import json, sys
for image in json.load(open(sys.argv[1]))["images"]:
    print(image["label"], image["file"], image["size"], *image["volumes"])
PY
CAPACITY=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["discs"]["capacity"])' "$LOGS/pack-iso-warm-1.out")
# The README and the airlift executable every disc carries, taken from airlift's disc 1.
SHARED=$WORK/shared
mkdir -p "$SHARED"
xorriso -osirrox on -indev "$WORK/iso/$(awk 'NR == 1 { print $2 }' "$WORK/discs.txt")" \
    -extract /README.txt "$SHARED/README.txt" -extract /airlift "$SHARED/airlift" >/dev/null 2>&1
shared=("$BUNDLE/ocp.manifest.json" "$BUNDLE/ocp.manifest.json.minisig" "$BUNDLE/ocp.SHA256SUMS"
    "$BUNDLE/ocp.SHA256SUMS.minisig" "$SHARED/README.txt" "$SHARED/airlift")
export BUNDLE
# record TOOL: the sizes and Rock Ridge listings of TOOL's images, kept in $WORK/TOOL.list;
# the images go (each run writes a bundle's worth).
record() {
    local label image _rest
    while read -r label image _rest; do
        echo "size $image $(stat -c %s "$WORK/$1/$image")"
        [[ $1 == cat ]] || isoinfo -R -f -i "$WORK/$1/$image" | sort | sed "s|^|$image |"
    done <"$WORK/discs.txt" >"$WORK/$1.list"
    rm -rf "${WORK:?}/$1"
}
for cache in cold warm; do
    for tool in xorriso genisoimage cat; do
        run_cache "$tool" "$cache" "${DURABLE[@]}" "$BENCH_DIR_HERE/iso-images.sh" "$tool" "$WORK/discs.txt" "$WORK/$tool" "${shared[@]}"
        record "$tool"
    done
done
mkdir -p "$WORK/airlift" && mv "$WORK/iso/"*.iso "$WORK/airlift/" && record airlift

# Every image fits the disc, and airlift's hold the files xorriso's do.
echo
printf '%-22s %14s %14s %14s\n' disc airlift xorriso genisoimage
size_of() { awk -v f="$2" '$1 == "size" && $2 == f { print $3 }' "$WORK/$1.list"; }
while read -r label image _size _volumes; do
    a=$(size_of airlift "$image") x=$(size_of xorriso "$image") g=$(size_of genisoimage "$image")
    ((a <= CAPACITY)) || fail "$image is $a bytes, more than the $CAPACITY a disc holds"
    printf '%-22s %14s %14s %14s\n' "$label" "$a" "$x" "$g"
done <"$WORK/discs.txt"
diff <(grep -v '^size ' "$WORK/airlift.list") <(grep -v '^size ' "$WORK/xorriso.list") ||
    fail "airlift's images and xorriso's hold different files"
echo "(a disc holds $CAPACITY bytes; the layout: $(du -sh "$LAYOUT" | cut -f1); warm: fastest of ${BENCH_WARM_RUNS:-3})"
((CAN_DROP)) || echo "(cold runs skipped: dropping the page cache needs root)"
echo
print_results
