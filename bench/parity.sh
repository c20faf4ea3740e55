#!/usr/bin/env bash
# airlift parity benchmark (issue 15, must-show 1): `pack` with and without `--parity N` in the
# same run (the difference is the parity encode), `airlift repair` of N lost data volumes, cold
# (page cache dropped: needs root) and warm, and repair of the N recovery volumes (encoding them
# again), with peak RSS, next to the floor (the data volumes'
# bytes copied once, durably: `cat VOLUMES > FILE && sync`) and the shell way (`par2 create` with
# enough redundancy for N volumes, `par2 repair` of the same N volumes). See bench/README.md.
# Environment:
#   BENCH_SIZE         layout size (default 2G)
#   BENCH_VOLUME_SIZE  volume size (default 200M: about 11 data volumes)
#   BENCH_PARITY       recovery volumes (default 2)
#   BENCH_DIR          where the work directory is created (default /var/tmp; needs ~4x the size)
#   BENCH_KEEP=1       keep the work directory
#   AIRLIFT            airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
SIZE=${BENCH_SIZE:-2G}
VOLUME=${BENCH_VOLUME_SIZE:-200M}
N=${BENCH_PARITY:-2}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "BENCH_PARITY must be a positive integer"

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 cat sync sha256sum
find_airlift
start_work airlift-parity results.tsv
detect_drop
HAVE_PAR2=0
if command -v par2 >/dev/null; then HAVE_PAR2=1; else say "par2 is missing (apt-get install par2): the shell way is skipped"; fi

use_layout "$WORK/layout"
KEY=$WORK/keys/site.key
PUB=$WORK/keys/site.pub
"$AIRLIFT" keygen --out "$WORK/keys" --name site >/dev/null 2>&1
PLAIN=$WORK/plain
WITH=$WORK/parity
pack() { "$AIRLIFT" pack --force --no-installer --key "$KEY" --volume-size "$VOLUME" --out "$1" "${@:2}" "oci:$LAYOUT"; }
pack "$PLAIN" >/dev/null 2>&1
pack "$WITH" --parity "$N" >/dev/null 2>&1
mapfile -t DATA < <(cd "$WITH" && ls airlift.[0-9][0-9][0-9][0-9].tar)
K=${#DATA[@]}
DATA_BYTES=$(cd "$WITH" && cat "${DATA[@]}" | wc -c)
LOST=("${DATA[@]:1:N}")
say "$K data volumes, $DATA_BYTES bytes; $N recovery volumes; repair rebuilds ${LOST[*]}"

# A copy of the bundle with parity to repair (hard links: repair replaces what it rebuilds).
REPAIR=$WORK/repair
mkdir -p "$REPAIR"
ln "$WITH"/* "$REPAIR"/
if ((HAVE_PAR2)); then
    # par2's redundancy in percent of the data: enough blocks for N whole volumes, and a margin.
    PCT=$(((100 * N + K - 1) / K + 2))
    SHELLWAY=$WORK/shell
    mkdir -p "$SHELLWAY"
    ln "$PLAIN"/airlift.[0-9][0-9][0-9][0-9].tar "$SHELLWAY"/
fi

for cache in cold warm; do
    run_cache "pack" "$cache" "$AIRLIFT" pack --force --no-installer --key "$KEY" --volume-size "$VOLUME" --out "$PLAIN" "oci:$LAYOUT"
    run_cache "pack-parity-$N" "$cache" "$AIRLIFT" pack --force --no-installer --key "$KEY" --volume-size "$VOLUME" --parity "$N" --out "$WITH" "oci:$LAYOUT"
    run_cache "repair-$N" "$cache" bash -c 'cd "$1" && rm -f -- "${@:3}" && exec "$2" repair . --key "$0" --quiet' \
        "$PUB" "$REPAIR" "$AIRLIFT" "${LOST[@]}"
    run_cache "repair-recovery" "$cache" bash -c 'cd "$1" && rm -f -- airlift.parity.* && exec "$2" repair . --key "$0" --quiet' \
        "$PUB" "$REPAIR" "$AIRLIFT"
    run_cache "floor-copy" "$cache" bash -c 'cd "$1" && cat "${@:2}" >"$0" && exec sync' "$WORK/floor.copy" "$WITH" "${DATA[@]}"
    rm -f -- "$WORK/floor.copy"
    # par2 is CPU-bound and slow: timed once, cold when the page cache can be dropped.
    if ((HAVE_PAR2)) && [[ $cache == cold || $CAN_DROP == 0 ]]; then
        run_cache "par2-create" "$cache" bash -c 'cd "$1" && rm -f -- *.par2 && par2 create -q -q -r"$0" -n"$2" -u bundle.par2 airlift.*.tar && exec sync' \
            "$PCT" "$SHELLWAY" "$N"
        run_cache "par2-repair" "$cache" bash -c 'cd "$1" && rm -f -- "${@:2}" && par2 repair -q -q bundle.par2 && exec sync' \
            "$PCT" "$SHELLWAY" "${LOST[@]}"
    fi
done
# The copy is the bundle as it was before pack ran again: its own signed sums must hold.
(cd "$REPAIR" && sha256sum --quiet -c airlift.SHA256SUMS) || fail "repair rebuilt a volume with other bytes"
"$AIRLIFT" verify "$REPAIR" --key "$PUB" --quiet >/dev/null || fail "the repaired bundle does not verify"

echo
echo "parity over $K data volumes of at most $VOLUME ($DATA_BYTES bytes), $N recovery volumes, $(nproc) cores"
((CAN_DROP)) || echo "(cold runs skipped: dropping the page cache needs root)"
print_results
python3 - "$RESULTS" "$DATA_BYTES" "$N" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, cache, sec, _ = line.split("\t")
    rows[(name, cache)] = float(sec)
data, n = int(sys.argv[2]), sys.argv[3]
for cache in ("cold", "warm"):
    get = lambda name: rows.get((name, cache))
    plain, parity, repair, floor = get("pack"), get(f"pack-parity-{n}"), get(f"repair-{n}"), get("floor-copy")
    if plain is None:
        continue
    encode = parity - plain
    again = get("repair-recovery")
    print(f"{cache}: parity encode {encode:.2f} s = pack with parity - pack ({data / max(encode, 1e-3) / 1e9:.2f} GB/s of data volumes); "
          f"repair of {n} data volumes {data / repair / 1e9:.2f} GB/s, of the {n} recovery volumes {data / again / 1e9:.2f} GB/s "
          f"(every volume checked whole first); floor (copy once) {data / floor / 1e9:.2f} GB/s")
    par2 = rows.get(("par2-create", "cold")) and "cold" or "warm"
    if cache == par2 and ("par2-create", par2) in rows:
        print(f"{cache}: par2 create {get('par2-create'):.2f} s ({get('par2-create') / max(encode, 1e-3):.1f}x airlift's encode), "
              f"par2 repair {get('par2-repair'):.2f} s ({get('par2-repair') / repair:.1f}x airlift repair)")
EOF
