#!/usr/bin/env bash
# Filtering a real-size operator catalog (issue 11, must-show 4): gen-catalog.py writes a
# file-based catalog shaped like redhat-operator-index (>= 200 packages, >= 20,000 bundles,
# >= 100 MB of JSON); `airlift catalog filter` keeps 5 packages of it (heads of their channels,
# dependencies added) and renders the kept config. Timed next to the floor: parsing the same
# JSON files and nothing else (one python3 process decoding every file's object stream, and
# `jq empty` over every file). Peak RSS from GNU time. Prints a table of ratios.
# Environment:
#   BENCH_CATALOG     an existing config directory to filter (skips the generator); then
#                     BENCH_PACKAGES must name packages of it
#   BENCH_PACKAGES    the 5 packages kept, comma-separated (default: 5 spread over the catalog)
#   BENCH_CATALOG_ARGS  arguments for gen-catalog.py (default: its defaults)
#   BENCH_COLD=1      drop the page cache before every timed command (needs root)
#   BENCH_RUNS        runs per measurement; the fastest time and the highest RSS are reported
#   BENCH_DIR         where the work directory is created (default /var/tmp; needs ~400 MB)
#   BENCH_KEEP=1      keep the work directory
#   BENCH_OUT         the JSON report (default catalog.json in the current directory)
#   BENCH_STRICT=1    exit 1 when a target is missed (a few seconds: 5 s; peak RSS < 200 MiB)
#   AIRLIFT           airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
RUNS=${BENCH_RUNS:-1}
OUT=${BENCH_OUT:-$PWD/catalog.json}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 jq find
check_cold
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
find_airlift

start_work airlift-catalog results.tsv

if [[ -n ${BENCH_CATALOG:-} ]]; then
    [[ -d $BENCH_CATALOG ]] || die "BENCH_CATALOG=$BENCH_CATALOG is not a directory"
    [[ -n ${BENCH_PACKAGES:-} ]] || die "BENCH_CATALOG needs BENCH_PACKAGES (5 packages of it)"
    CATALOG=$BENCH_CATALOG
else
    CATALOG=$WORK/configs
    say "generating a catalog in $CATALOG"
    # shellcheck disable=SC2086 # BENCH_CATALOG_ARGS is a list of arguments
    python3 "$BENCH_DIR_HERE/gen-catalog.py" ${BENCH_CATALOG_ARGS:-} "$CATALOG" 2>&1 | tee "$LOGS/gen.log" >&2
fi
PACKAGES=${BENCH_PACKAGES:-$(find "$CATALOG" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort |
    awk '{ n[NR] = $0 } END { for (i = 1; i <= 5; i++) printf "%s%s", (i > 1 ? "," : ""), n[int((NR - 1) * (i - 1) / 4) + 1] }')}
FILES=$WORK/files.list
find "$CATALOG" -type f -name '*.json' | sort >"$FILES"
BYTES=$(xargs -d '\n' cat -- <"$FILES" | wc -c)
COUNT=$(wc -l <"$FILES")

IMAGESET=$WORK/imageset.yaml
{
    printf 'kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\nmirror:\n  operators:\n'
    printf '    - catalog: registry.example.com/redhat/redhat-operator-index:v4.16\n      packages:\n'
    tr ',' '\n' <<<"$PACKAGES" | while read -r p; do printf '        - name: %s\n' "$p"; done
} >"$IMAGESET"
say "filtering $CATALOG ($COUNT files, $BYTES bytes of JSON) to $PACKAGES"

prep_out() { rm -rf -- "$WORK/out"; }
check_out() {
    local n
    n=$(find "$WORK/out" -name catalog.json | wc -l)
    ((n >= 5)) || fail "$1: airlift rendered $n packages, expected at least the 5 kept"
}
measure filter airlift prep_out check_out \
    "$AIRLIFT" catalog filter "$CATALOG" --config "$IMAGESET" --out "$WORK/out" --json
measure parse python3 : : python3 -c '
import json, sys
decoder = json.JSONDecoder()
for path in open(sys.argv[1]).read().splitlines():
    text, i = open(path).read(), 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            break
        _, i = decoder.raw_decode(text, i)
' "$FILES"
measure parse jq : : xargs -d '\n' -a "$FILES" jq empty

KEPT=$(python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(len(d.get("bundles", [])))' \
    "$(ls "$LOGS"/filter-airlift-*.out | head -n 1)" 2>/dev/null || echo "?")

rc=0
python3 - "$RESULTS" "$OUT" "$BYTES" "$COUNT" "$PACKAGES" "$KEPT" "$COLD" \
    "$("$AIRLIFT" --version 2>/dev/null || echo unknown)" <<'EOF' || rc=$?
import json, sys

results, out, size, files, packages, kept, cold, version = sys.argv[1:]
m = {}
for line in open(results):
    step, tool, sec, rss = line.split()
    m[tool] = {"seconds": float(sec), "peak_rss_mib": int(rss) / 1024}
a, py, jq = m["airlift"], m["python3"], m["jq"]
met_time, met_rss = a["seconds"] <= 5.0, a["peak_rss_mib"] < 200
print(f"\ncatalog: {int(size)} bytes of JSON in {files} files; kept packages {packages} "
      f"({kept} bundles); {'cold' if cold == '1' else 'warm'} cache; {version}\n")
fmt = "| {:<44} | {:>8} | {:>8} | {:>14} |"
print(fmt.format("command", "seconds", "RSS MiB", "airlift / this"))
print("|" + "|".join("-" * (w + 2) for w in (44, 8, 8, 14)) + "|")
for name, r in (("airlift catalog filter (5 packages, render)", a), ("floor: python3 json, every file", py),
                ("floor: jq empty, every file", jq)):
    print(fmt.format(name, f"{r['seconds']:.2f}", f"{r['peak_rss_mib']:.0f}", f"{a['seconds'] / r['seconds']:.2f}"))
print(f"\ntarget: a few seconds (<= 5 s): {'met' if met_time else 'MISSED'}; "
      f"peak RSS < 200 MiB: {'met' if met_rss else 'MISSED'}")
json.dump({"bytes": int(size), "files": int(files), "packages": packages.split(","), "kept_bundles": kept,
           "cold": cold == "1", "version": version, "airlift": a, "python3": py, "jq": jq,
           "met": met_time and met_rss}, open(out, "w"), indent=2)
sys.exit(0 if met_time and met_rss else 3)
EOF
if ((rc == 3)); then
    [[ ${BENCH_STRICT:-0} == 1 ]] && fail "a target was missed"
elif ((rc != 0)); then
    fail "the report failed"
fi
say "report: $OUT"
