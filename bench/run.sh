#!/usr/bin/env bash
# airlift benchmark: pack, verify and unpack, each against the shell baseline
# (tar + split + sha256sum), measured in the same run on the same data.
# See bench/README.md. Environment:
#   BENCH_SIZE         size of the generated OCI layout (default 2G; K/M/G/T = powers of 1024)
#   BENCH_VOLUME_SIZE  volume size for airlift and split (default 1G)
#   BENCH_CHUNK_SIZE   airlift --chunk-size (default: airlift's own default)
#   BENCH_RUNS         runs per measurement; the fastest is reported (default 1)
#   BENCH_DIR          where the work directory is created (default /var/tmp)
#   BENCH_KEEP=1       keep the work directory
#   BENCH_OUT          also write the results as JSON to this file
#   BENCH_STRICT=1     exit 1 when a target is missed
#   AIRLIFT            airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
SIZE=${BENCH_SIZE:-2G}
VOLUME=${BENCH_VOLUME_SIZE:-1G}
CHUNK=${BENCH_CHUNK_SIZE:-}
RUNS=${BENCH_RUNS:-1}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"

# --- prerequisites --------------------------------------------------------------------
require_tools python3 tar split sha256sum cat sync
check_cold
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"

SIZE_BYTES=$(to_bytes "$SIZE")
VOL_BYTES=$(to_bytes "$VOLUME")

# --- build ----------------------------------------------------------------------------
find_airlift
AIRLIFT_VERSION=$("$AIRLIFT" --version 2>/dev/null || echo unknown)

# --- work directory -------------------------------------------------------------------
make_work airlift-bench
trap remove_work EXIT
# layout + two bundles + two unpacked layouts, plus slack
need_kib=$((SIZE_BYTES / 1024 * 11 / 2))
avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
((avail_kib > need_kib)) || die "not enough space in $PARENT: need ~$((need_kib / 1048576)) GiB, have $((avail_kib / 1048576)) GiB"

KEYS=$WORK/keys
A_BUNDLE=$WORK/airlift-bundle
B_BUNDLE=$WORK/baseline-bundle
A_OUT=$WORK/airlift-out
B_OUT=$WORK/baseline-out
STATE=$WORK/state
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
mkdir -p "$LOGS"
: >"$RESULTS"

# airlift keeps state (rollback memory, journals, caches) under HOME/XDG dirs: give it a
# private, fresh set for every run so no run benefits from an earlier one. (An array, not
# a function: /usr/bin/time must exec it; env execs airlift, so RSS is airlift's own.)
AL=(env HOME="$STATE" XDG_STATE_HOME="$STATE/state" XDG_CACHE_HOME="$STATE/cache"
    XDG_DATA_HOME="$STATE/data" XDG_CONFIG_HOME="$STATE/config" "$AIRLIFT")
fresh_state() { rm -rf -- "$STATE"; mkdir -p "$STATE"; }

# --- data -----------------------------------------------------------------------------
use_layout "$WORK/layout"
DATA_BYTES=$(find "$LAYOUT" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')
BLOBS=$(find "$LAYOUT/blobs/sha256" -type f | wc -l)

fresh_state
"${AL[@]}" keygen --out "$KEYS" --name bench >"$LOGS/keygen.out" 2>&1 ||
    { cat "$LOGS/keygen.out" >&2; die "airlift keygen failed"; }
[[ -f $KEYS/bench.key && -f $KEYS/bench.pub ]] || die "airlift keygen wrote no $KEYS/bench.key / bench.pub"

# --- pack -----------------------------------------------------------------------------
chunk_args=()
if [[ -n $CHUNK ]]; then chunk_args=(--chunk-size "$CHUNK"); fi
prep_pack_a() { rm -rf -- "$A_BUNDLE"; fresh_state; }
prep_pack_b() { rm -rf -- "$B_BUNDLE"; mkdir -p "$B_BUNDLE"; }
say "pack"
measure pack airlift prep_pack_a : \
    "${AL[@]}" pack --quiet --key "$KEYS/bench.key" --out "$A_BUNDLE" --name bench \
    --volume-size "$VOL_BYTES" "${chunk_args[@]}" "oci:$LAYOUT"
measure pack baseline prep_pack_b : \
    "${DURABLE[@]}" bash -c 'set -euo pipefail; cd "$1"
             tar -cf - -C "$2" . | split -d -a 4 -b "$3" - vol.
             sha256sum vol.* >SHA256SUMS' _ "$B_BUNDLE" "$LAYOUT" "$VOL_BYTES"

shopt -s nullglob
a_vols=("$A_BUNDLE"/bench.[0-9]*.tar)
shopt -u nullglob
((${#a_vols[@]} > 0)) || fail "airlift pack wrote no volumes (bench.NNNN.tar) in $A_BUNDLE"
for f in "$A_BUNDLE/bench.manifest.json" "$A_BUNDLE/bench.manifest.json.minisig" \
    "$A_BUNDLE/bench.SHA256SUMS" "$A_BUNDLE/bench.SHA256SUMS.minisig"; do
    [[ -f $f ]] || fail "airlift pack did not write $f"
done
for v in "${a_vols[@]}"; do
    s=$(stat -c %s "$v")
    ((s <= VOL_BYTES)) || fail "$v is $s bytes, more than the volume size $VOL_BYTES"
done

# --- verify ---------------------------------------------------------------------------
say "verify"
measure verify airlift fresh_state : \
    "${AL[@]}" verify --quiet "$A_BUNDLE" --key "$KEYS/bench.pub"
measure verify baseline : : \
    bash -c 'cd "$1" && sha256sum -c --quiet SHA256SUMS' _ "$B_BUNDLE"

# --- unpack ---------------------------------------------------------------------------
prep_unpack_a() { rm -rf -- "$A_OUT"; fresh_state; }
prep_unpack_b() { rm -rf -- "$B_OUT"; mkdir -p "$B_OUT"; }
say "unpack"
measure unpack airlift prep_unpack_a : \
    "${AL[@]}" unpack --quiet "$A_BUNDLE" --key "$KEYS/bench.pub" --layout "$A_OUT"
measure unpack baseline prep_unpack_b : \
    "${DURABLE[@]}" bash -c 'set -euo pipefail
             cat "$1"/vol.* | tar -xf - -C "$2"
             cd "$2/blobs/sha256"
             for f in *; do printf "%s  %s\n" "$f" "$f"; done | sha256sum -c --quiet -' \
    _ "$B_BUNDLE" "$B_OUT"

# --- correctness of what was unpacked (untimed) ---------------------------------------
say "checking the unpacked layouts against the source"
python3 - "$LAYOUT" "$A_OUT" "$B_OUT" <<'EOF' || fail "unpacked layout differs from the source"
import hashlib, json, os, sys

def summary(root):
    blobs = sorted(os.listdir(os.path.join(root, "blobs", "sha256")))
    with open(os.path.join(root, "index.json")) as f:
        idx = json.load(f)
    refs = sorted((m["digest"], m.get("annotations", {}).get("org.opencontainers.image.ref.name", ""))
                  for m in idx["manifests"])
    if not os.path.isfile(os.path.join(root, "oci-layout")):
        sys.exit(f"{root}: no oci-layout file")
    return blobs, refs

src_blobs, src_refs = summary(sys.argv[1])
ok = True
for out in sys.argv[2:]:
    blobs, refs = summary(out)
    if blobs != src_blobs:
        print(f"{out}: blobs differ: missing {sorted(set(src_blobs) - set(blobs))[:5]}, "
              f"extra {sorted(set(blobs) - set(src_blobs))[:5]}", file=sys.stderr)
        ok = False
    if refs != src_refs:
        print(f"{out}: index.json differs: {refs} != {src_refs}", file=sys.stderr)
        ok = False
# airlift's output is checked byte for byte too (the baseline checked its own in the timed step)
d = os.path.join(sys.argv[2], "blobs", "sha256")
for name in sorted(set(src_blobs) & set(os.listdir(d))):
    h = hashlib.sha256()
    with open(os.path.join(d, name), "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    if h.hexdigest() != name:
        print(f"{sys.argv[2]}: blob {name} has sha256 {h.hexdigest()}", file=sys.stderr)
        ok = False
sys.exit(0 if ok else 1)
EOF
if command -v skopeo >/dev/null; then
    skopeo inspect "oci:$A_OUT:multi" >/dev/null || fail "skopeo cannot read the unpacked layout $A_OUT"
fi

# --- report ---------------------------------------------------------------------------
rc=0
python3 - "$RESULTS" "$DATA_BYTES" "$BLOBS" "$VOL_BYTES" "$RUNS" "$AIRLIFT_VERSION" "${BENCH_OUT:-}" <<'EOF' || rc=$?
import json, os, sys

results, data, blobs, vol, runs, version, out = sys.argv[1:]
data, blobs, vol, runs = int(data), int(blobs), int(vol), int(runs)
rows = {}
with open(results) as f:
    for line in f:
        step, tool, sec, rss = line.split()
        rows.setdefault(step, {})[tool] = {
            "seconds": float(sec),
            "gb_per_s": data / 1e9 / max(float(sec), 1e-9),
            "peak_rss_mib": int(rss) / 1024,
        }
cpus = os.cpu_count()
print(f"\ndata: {data} bytes ({data / 1e9:.2f} GB, {data / 2**30:.2f} GiB) in {blobs} blobs; "
      f"volume size {vol} bytes; {cpus} CPUs; {runs} run(s), fastest shown; {version}")
hdr = ("step", "airlift s", "baseline s", "ratio", "airlift GB/s", "baseline GB/s",
       "airlift MiB", "baseline MiB")
print("\n" + "  ".join(f"{h:>13}" if i else f"{h:<7}" for i, h in enumerate(hdr)))
failed = []
for step in ("pack", "verify", "unpack"):
    a, b = rows[step]["airlift"], rows[step]["baseline"]
    ratio = b["seconds"] / max(a["seconds"], 1e-9)
    rows[step]["ratio"] = ratio
    cells = (f"{a['seconds']:.2f}", f"{b['seconds']:.2f}", f"{ratio:.2f}x",
             f"{a['gb_per_s']:.2f}", f"{b['gb_per_s']:.2f}",
             f"{a['peak_rss_mib']:.1f}", f"{b['peak_rss_mib']:.1f}")
    print(f"{step:<7}  " + "  ".join(f"{c:>13}" for c in cells))
    if ratio < 5:
        failed.append(f"{step} is {ratio:.2f}x the baseline (target >= 5x)")
    if a["peak_rss_mib"] >= 100:
        failed.append(f"{step} peak RSS {a['peak_rss_mib']:.1f} MiB (target < 100 MiB)")
v = rows["verify"]["airlift"]["gb_per_s"]
if v < 1.2:
    failed.append(f"verify runs at {v:.2f} GB/s (target >= 1.2 GB/s on 2 cores)")
print("\ntargets: " + ("all met" if not failed else "MISSED:\n  " + "\n  ".join(failed)))
if out:
    with open(out, "w") as f:
        json.dump({"data_bytes": data, "blobs": blobs, "volume_size": vol, "cpus": cpus,
                   "runs": runs, "airlift_version": version, "steps": rows,
                   "targets_missed": failed}, f, indent=2)
        f.write("\n")
sys.exit(3 if failed else 0)
EOF
case $rc in
0) ;;
3) if [[ ${BENCH_STRICT:-0} == 1 ]]; then exit 1; fi ;;
*) die "writing the report failed" ;;
esac
