# Shared by the benchmark scripts: messages, prerequisites, sizes, and the airlift binary.
# Source it after setting BENCH_DIR_HERE (this directory) and REPO.

die() { echo "bench: $*" >&2; exit 2; }
fail() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

# require_tools TOOL...: GNU time, bash 5 and the given tools must be present.
require_tools() {
    [[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is missing; install it: apt-get install time"
    /usr/bin/time -f '%e %M' -o /dev/null true 2>/dev/null ||
        die "/usr/bin/time is not GNU time; install it: apt-get install time"
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
    ((BASH_VERSINFO[0] >= 5)) || die "bash 5 or newer is needed (EPOCHREALTIME)"
}

# to_bytes SIZE: 2G, 512M, 100K (powers of 1024) or plain bytes.
to_bytes() {
    python3 - "$1" <<'EOF'
import re, sys
m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*", sys.argv[1], re.I)
if not m:
    sys.exit(f"bench: bad size {sys.argv[1]!r}")
print(int(float(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]))
EOF
}

# find_airlift: use $AIRLIFT if set, else build the release binary and point AIRLIFT at it.
find_airlift() {
    if [[ -n ${AIRLIFT:-} ]]; then
        [[ -x $AIRLIFT ]] || die "AIRLIFT=$AIRLIFT is not an executable"
        return
    fi
    command -v cargo >/dev/null || die "cargo is missing (or set AIRLIFT to a built binary)"
    say "building airlift (cargo build --release)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
    local cand
    for cand in "$REPO/target/x86_64-unknown-linux-gnu/release/airlift" "$REPO/target/release/airlift"; do
        if [[ -x $cand ]]; then AIRLIFT=$cand; return; fi
    done
    die "built, but no airlift binary found under $REPO/target"
}

# make_work NAME: a fresh work directory $PARENT/NAME.XXXXXX (PARENT: BENCH_DIR, default
# /var/tmp) in WORK; remove_work removes it, unless BENCH_KEEP=1.
make_work() {
    PARENT=${BENCH_DIR:-/var/tmp}
    mkdir -p "$PARENT"
    WORK=$(mktemp -d "$PARENT/$1.XXXXXX")
}
# start_work NAME FILE: make_work, removed on exit; LOGS=$WORK/logs (created) and an empty
# RESULTS=$WORK/FILE.
start_work() {
    make_work "$1"
    trap remove_work EXIT
    LOGS=$WORK/logs
    RESULTS=$WORK/$2
    mkdir -p "$LOGS"
    : >"$RESULTS"
}
remove_work() {
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        say "kept work directory $WORK"
    else
        rm -rf -- "$WORK"
    fi
}

# BENCH_COLD=1: every timed command starts with an empty page cache (needs root).
# BENCH_DURABLE=1: the shell way's commands end in `sync`, inside their time (airlift fsyncs
# itself); prefix a baseline command with "${DURABLE[@]}".
COLD=${BENCH_COLD:-0}
DURABLE=()
if [[ ${BENCH_DURABLE:-0} == 1 ]]; then DURABLE=(bash -c '"$@" && exec sync' _); fi
check_cold() {
    [[ $COLD == 1 ]] || return 0
    { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null ||
        die "BENCH_COLD=1 needs root: cannot write /proc/sys/vm/drop_caches"
}
# drop_caches: what runs, untimed, before every timed command
drop_caches() {
    sync
    if [[ $COLD == 1 ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# use_layout DIR: the layout to measure is $BENCH_LAYOUT when set (made once by trip.sh for all
# scripts), else gen-layout.py writes a BENCH_SIZE one into DIR; sets LAYOUT.
use_layout() {
    if [[ -n ${BENCH_LAYOUT:-} ]]; then
        [[ -f $BENCH_LAYOUT/index.json ]] || die "BENCH_LAYOUT=$BENCH_LAYOUT is not an OCI layout"
        LAYOUT=$BENCH_LAYOUT
        say "using the layout $LAYOUT"
    else
        LAYOUT=$1
        say "generating a $SIZE OCI layout in $LAYOUT"
        python3 "$BENCH_DIR_HERE/gen-layout.py" --size "$SIZE" ${BENCH_IMAGES:+--images "$BENCH_IMAGES"} "$LAYOUT"
    fi
}

# timed and measure write logs under $LOGS and results to $RESULTS; BENCH_RUNS is $RUNS.
# timed NAME CMD...: run CMD under GNU time; sets T_SEC (wall seconds) and T_RSS (peak RSS in
# KiB of its largest process). Any failure aborts.
timed() {
    local name=$1; shift
    local tf="$LOGS/$name.time" rc=0 t0 t1
    drop_caches
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%e %M' -o "$tf" "$@" >"$LOGS/$name.out" 2>"$LOGS/$name.err" || rc=$?
    t1=$EPOCHREALTIME
    if ((rc != 0)); then
        echo "bench: $name failed with exit code $rc: $*" >&2
        tail -n 20 "$LOGS/$name.out" "$LOGS/$name.err" >&2 || true
        exit 1
    fi
    local e m
    read -r e m < <(tail -n 1 "$tf")
    [[ $m =~ ^[0-9]+$ ]] || die "$name: cannot read GNU time output: $(cat "$tf")"
    T_SEC=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    T_RSS=$m
}

# measure STEP TOOL PREP POST CMD...: BENCH_RUNS runs, PREP before and POST NAME after each
# (POST may replace R_RSS); records the fastest time and the highest peak RSS.
measure() {
    local step=$1 tool=$2 prep=$3 post=$4; shift 4
    local best="" rss=0 r
    for ((r = 1; r <= RUNS; r++)); do
        $prep
        timed "$step-$tool-$r" "$@"
        R_RSS=$T_RSS
        $post "$step-$tool-$r"
        say "  $step $tool run $r: ${T_SEC}s, $((R_RSS / 1024)) MiB"
        if [[ -z $best ]] || awk -v a="$T_SEC" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$T_SEC; fi
        if ((R_RSS > rss)); then rss=$R_RSS; fi
    done
    printf '%s\t%s\t%s\t%s\n' "$step" "$tool" "$best" "$rss" >>"$RESULTS"
}

# detect_drop: CAN_DROP=1 when this process may drop the page cache (root), else 0.
detect_drop() {
    CAN_DROP=0
    if { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then CAN_DROP=1; fi
}

# root_store ROOT: the storage directory of the registry root ROOT (from its config.json).
root_store() {
    python3 -c 'import json,os,sys; c=json.load(open(sys.argv[1]+"/config.json")); s=c.get("storage","storage"); print(s if os.path.isabs(s) else os.path.join(sys.argv[1], s))' "$1"
}

# run_cache NAME CACHE CMD...: time CMD with its peak RSS: once after dropping the page cache
# (cold), once as it is (once: a command that changes what it runs on), or BENCH_WARM_RUNS
# times (warm, default 3; the fastest time and the highest RSS are kept). Appended to $RESULTS.
run_cache() {
    local name=$1 cache=$2 best="" rss=0 r runs=${BENCH_WARM_RUNS:-3}; shift 2
    if [[ $cache == once ]]; then
        runs=1
    elif [[ $cache == cold ]]; then
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

# print_results: the table of $RESULTS (name, cache, seconds, peak RSS).
print_results() {
    printf '%-18s %-5s %9s %9s\n' command cache seconds "RSS MiB"
    while IFS=$'\t' read -r name cache sec rss; do
        printf '%-18s %-5s %9s %9d\n' "$name" "$cache" "$sec" "$((rss / 1024))"
    done <"$RESULTS"
}

# generated_root PERCENT: install a registry root in $WORK/root (ROOT; STORE: its storage)
# and fill it with gen-root.py: BENCH_BLOBS blobs (BLOBS, default 100000) in BENCH_IMAGES
# manifests (IMAGES, default 3000) over BENCH_REPOS repositories (REPOS, default 300), PERCENT
# of the images deleted.
generated_root() {
    BLOBS=${BENCH_BLOBS:-100000}
    IMAGES=${BENCH_IMAGES:-3000}
    REPOS=${BENCH_REPOS:-300}
    ROOT=$WORK/root
    say "installing a registry root in $ROOT"
    "$AIRLIFT" install --root "$ROOT" --hostname localhost --no-start --json >"$LOGS/install.json"
    STORE=$(root_store "$ROOT")
    say "generating $BLOBS blobs and $IMAGES manifests in $REPOS repositories under $STORE, $1% of the images deleted"
    local t0=$EPOCHREALTIME
    python3 "$BENCH_DIR_HERE/gen-root.py" "$STORE" "$BLOBS" "$IMAGES" "$REPOS" "$1"
    say "generated in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s: $(du -sh "$STORE" | cut -f1)"
}
