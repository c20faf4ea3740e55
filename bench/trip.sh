#!/usr/bin/env bash
# airlift's whole trip against the disk's floor: every step of issue 10's speed table on one
# release-shaped layout, cold (page cache dropped before every timed command), durable (the shell
# way ends in `sync` inside its time; airlift fsyncs itself), next to the floor (the same bytes
# copied once, cold), in the same run. Runs run.sh, registry.sh and client.sh on that layout and
# prints one table: airlift, shell way, floor, ratio, target, met. See bench/README.md.
# Environment:
#   BENCH_SIZE         layout size (default 2.4G: about 2.57 GB, as in the issue)
#   BENCH_IMAGES       single-arch images in the layout (default 76: 315 blobs, as in the issue)
#   BENCH_VOLUME_SIZE  volume size (default 1G)
#   BENCH_RUNS         runs per measurement; the fastest is reported (default 1)
#   BENCH_BCRYPT_COST  docker-registry's htpasswd cost (default 4: it checks the hash on every
#                      request; at cost 10 that, not the data path, is what registry steps measure)
#   BENCH_DIR          where the work directory is created (default /var/tmp; needs ~10x the size)
#   BENCH_KEEP=1       keep the work directory (each script's logs are under it)
#   BENCH_OUT          the JSON report (default trip.json in the current directory)
#   BENCH_STRICT=1     exit 1 when a target is missed
#   AIRLIFT            airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
SIZE=${BENCH_SIZE:-2.4G}
IMAGES=${BENCH_IMAGES:-76}
VOLUME=${BENCH_VOLUME_SIZE:-1G}
RUNS=${BENCH_RUNS:-1}
OUT=${BENCH_OUT:-$PWD/trip.json}
export BENCH_COLD=1 BENCH_DURABLE=1 BENCH_BCRYPT_COST=${BENCH_BCRYPT_COST:-4}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"
require_tools python3 cat sync find
check_cold
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $IMAGES =~ ^[1-9][0-9]*$ ]] || die "BENCH_IMAGES must be a positive integer"
find_airlift
export AIRLIFT

start_work airlift-trip floor.tsv

# The layout is named "layout": registry.sh's repository is its basename.
LAYOUT=$WORK/layout
say "generating a $SIZE OCI layout ($IMAGES images) in $LAYOUT"
python3 "$BENCH_DIR_HERE/gen-layout.py" --size "$SIZE" --images "$IMAGES" "$LAYOUT"

# --- the floor: the layout's bytes read once, and copied once durably -------------------
# Measured before and after the steps (the disk may be shared): the faster counts.
prep_copy() { rm -f -- "$WORK/floor.copy"; }
floor() {
    say "floor: cold cat of the layout, and cold cat > one file + sync"
    measure read floor : : bash -c 'find "$1" -type f -exec cat {} + >/dev/null' _ "$LAYOUT"
    measure copy floor prep_copy : \
        bash -c 'find "$1" -type f -exec cat {} + >"$2" && exec sync' _ "$LAYOUT" "$WORK/floor.copy"
    rm -f -- "$WORK/floor.copy"
}
floor

# --- the steps --------------------------------------------------------------------------
# Each script gets the layout and its own work directory and JSON report; the pull fetches
# every distinct blob once (the issue's "all 315 blobs").
for script in run registry client; do
    say "=== $script.sh"
    BENCH_LAYOUT=$LAYOUT BENCH_SIZE=$SIZE BENCH_VOLUME_SIZE=$VOLUME BENCH_RUNS=$RUNS \
        BENCH_DIR=$WORK BENCH_OUT=$WORK/$script.json BENCH_PULL_DISTINCT=1 BENCH_STRICT=0 \
        "$BENCH_DIR_HERE/$script.sh" 2>&1 | tee "$LOGS/$script.log" >&2 ||
        fail "$script.sh failed (its log: $LOGS/$script.log)"
done
floor

# --- the table --------------------------------------------------------------------------
rc=0
python3 - "$WORK" "$RESULTS" "$OUT" "$("$AIRLIFT" --version 2>/dev/null || echo unknown)" \
    "$(cat /proc/loadavg)" <<'EOF' || rc=$?
import json, os, sys

work, floor_tsv, out, version, load = sys.argv[1:]
floor = {}
for line in open(floor_tsv):
    step, _, sec, _ = line.split()
    floor[step] = min(float(sec), floor.get(step, float("inf")))
run, reg, cli = (json.load(open(os.path.join(work, f"{n}.json"))) for n in ("run", "registry", "client"))
data, blobs = run["data_bytes"], run["blobs"]
s = lambda doc, step, tool: doc["steps"][step][tool]

def row(name, a, shell, shell_label, fl, fl_label, target):
    """target: (kind, bound); kind 'floor' = airlift / floor <= bound, 'faster' = shell / airlift >= bound"""
    kind, bound = target
    ratio = a["seconds"] / fl if kind == "floor" else shell["seconds"] / a["seconds"]
    met = ratio <= bound if kind == "floor" else ratio >= bound
    return {"step": name, "airlift_s": a["seconds"], "airlift_peak_rss_mib": a["peak_rss_mib"],
            "shell_s": shell["seconds"], "shell_way": shell_label,
            "shell_over_airlift": shell["seconds"] / a["seconds"],
            "floor_s": fl, "floor": fl_label, "ratio": ratio, "ratio_kind": kind,
            "target": (f"<= {bound:g}x floor" if kind == "floor" else f">= {bound:g}x"), "met": met}

fetch = s(cli, "fetch", "curl")["seconds"]
pull_a, pull_d = s(reg, "pull", "airlift"), s(reg, "pull", "baseline")
rows = [
    row("pack from a layout", s(run, "pack", "airlift"), s(run, "pack", "baseline"),
        "tar | split + sha256sum + sync", floor["copy"], "cat > file + sync", ("floor", 1.2)),
    row("verify", s(run, "verify", "airlift"), s(run, "verify", "baseline"), "sha256sum -c",
        floor["read"], "cat > /dev/null", ("floor", 1.0)),
    row("unpack to a layout", s(run, "unpack", "airlift"), s(run, "unpack", "baseline"),
        "cat | tar -x + sha256sum + sync", floor["copy"], "cat > file + sync", ("floor", 1.3)),
    row("unpack into a fresh registry", s(reg, "unpack", "airlift"), s(reg, "unpack", "baseline"),
        "cat | tar -x + skopeo copy + sync", floor["copy"], "cat > file + sync", ("floor", 1.3)),
    row("pack from a registry", s(cli, "pack", "airlift"), s(cli, "pack", "baseline"),
        "skopeo copy + tar | split + sha256sum + sync", max(fetch, floor["copy"]),
        f"max(curl fetch {fetch:.2f} s, cat > file + sync {floor['copy']:.2f} s)", ("floor", 1.2)),
    row("unpack --to docker-registry", s(cli, "push", "airlift"), s(cli, "push", "baseline"),
        "skopeo copy oci: docker:// + sync", None, "-", ("faster", 3.0)),
]
# the pull: throughput against docker-registry's, the server's peak RSS
pr = pull_d["seconds"] / pull_a["seconds"]
rows.append({"step": f"registry pull, {reg['pull_jobs']} curl, {reg['pull_requests']} blobs",
             "airlift_s": pull_a["seconds"], "airlift_peak_rss_mib": pull_a["peak_rss_mib"],
             "airlift_mb_s": reg["pull_bytes"] / 1e6 / pull_a["seconds"],
             "shell_s": pull_d["seconds"], "shell_way": "docker-registry (TLS + auth)",
             "shell_mb_s": reg["pull_bytes"] / 1e6 / pull_d["seconds"], "shell_over_airlift": pr,
             "floor_s": None, "floor": "-", "ratio": pr, "ratio_kind": "faster",
             "target": ">= 1.2x", "met": pr >= 1.2})
for r in rows:
    if r["airlift_peak_rss_mib"] >= 100:
        r["met"] = False
        r["target"] += " (RSS >= 100 MiB)"

print(f"\ndata: {data} bytes ({data / 1e9:.2f} GB) in {blobs} blobs, {reg['refs']} refs; "
      f"{os.cpu_count()} CPUs; load average at the end {load.split()[0]}; cold and durable; "
      f"docker-registry bcrypt cost {reg['bcrypt_cost']}; {version}")
print(f"floor: cold cat {floor['read']:.2f} s, cold cat > file + sync {floor['copy']:.2f} s, "
      f"curl fetch of the distinct blobs {fetch:.2f} s\n")
fmt = "| {:<34} | {:>8} | {:>7} | {:>8} | {:>17} | {:>8} | {:>7} | {:<16} | {:<6} |"
print(fmt.format("step", "airlift", "RSS MiB", "shell", "shell / airlift", "floor", "ratio", "target", "met"))
print("|" + "|".join("-" * (w + 2) for w in (34, 8, 7, 8, 17, 8, 7, 16, 6)) + "|")
for r in rows:
    a = f"{r['airlift_s']:.2f}"
    if "airlift_mb_s" in r:
        a = f"{r['airlift_mb_s']:.0f}MB/s"
    sh = f"{r['shell_mb_s']:.0f}MB/s" if "shell_mb_s" in r else f"{r['shell_s']:.2f}"
    fl = "-" if r["floor_s"] is None else f"{r['floor_s']:.2f}"
    ratio = f"{r['ratio']:.2f}x"
    print(fmt.format(r["step"], a, f"{r['airlift_peak_rss_mib']:.1f}", sh,
                     f"{r['shell_over_airlift']:.2f}x", fl, ratio, r["target"],
                     "met" if r["met"] else "MISSED"))
print("\nseconds; ratio = airlift / floor, or for unpack --to and the pull shell / airlift (throughput);")
print("shell ways: " + "; ".join(f"{r['step']}: {r['shell_way']}" for r in rows))
with open(out, "w") as f:
    json.dump({"data_bytes": data, "blobs": blobs, "refs": reg["refs"], "cpus": os.cpu_count(),
               "loadavg_end": load, "airlift_version": version, "floor": floor,
               "fetch_s": fetch, "table": rows, "run": run, "registry": reg, "client": cli}, f, indent=2)
    f.write("\n")
print(f"JSON: {out}")
sys.exit(0 if all(r["met"] for r in rows) else 3)
EOF
case $rc in
0) ;;
3) if [[ ${BENCH_STRICT:-0} == 1 ]]; then exit 1; fi ;;
*) die "writing the report failed" ;;
esac
