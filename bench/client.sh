#!/usr/bin/env bash
# airlift registry-client benchmark: `airlift pack docker://…` and `airlift unpack --to docker://…`
# against skopeo and curl, on Debian's docker-registry (CNCF distribution) over loopback TLS with
# basic auth, in the same run on the same data. See bench/README.md.
#   1. pack from a registry: `airlift pack --authfile A --cert-dir D --cache FRESH docker://…` for
#      every ref, against `skopeo copy docker:// oci:OUT:REF` for every ref, then
#      `tar | split` + `sha256sum`; and against the raw fetch of the same distinct blobs by
#      parallel curl processes;
#   2. push into a fresh registry: `airlift unpack BUNDLE --to docker://…/mirror` against
#      `skopeo copy oci:LAYOUT:REF docker://…/mirror/…` for every ref (a fresh docker-registry
#      for every run of either).
# Environment:
#   BENCH_SIZE          size of the generated OCI layout (default 2G; K/M/G/T = powers of 1024)
#   BENCH_VOLUME_SIZE   volume size for airlift pack and split (default 1G)
#   BENCH_PULL_JOBS     parallel curl processes for the raw fetch (default 8)
#   BENCH_RUNS          runs per measurement; the fastest is reported (default 1)
#   BENCH_DIR           where the work directory is created (default /var/tmp)
#   BENCH_KEEP=1        keep the work directory
#   BENCH_OUT           also write the results as JSON to this file
#   BENCH_STRICT=1      exit 1 when a target is missed
#   BENCH_BCRYPT_COST   bcrypt cost of docker-registry's htpasswd (default 10)
#   AIRLIFT             airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
SIZE=${BENCH_SIZE:-2G}
VOLUME=${BENCH_VOLUME_SIZE:-1G}
RUNS=${BENCH_RUNS:-1}
JOBS=${BENCH_PULL_JOBS:-8}
BCRYPT_COST=${BENCH_BCRYPT_COST:-10}
DOCKER_REGISTRY=/usr/bin/docker-registry

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"

# --- prerequisites --------------------------------------------------------------------
[[ -x $DOCKER_REGISTRY ]] ||
    die "$DOCKER_REGISTRY is missing; install it: apt-get install docker-registry"
require_tools python3 tar split sync curl openssl skopeo xargs sha256sum
check_cold
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "BENCH_PULL_JOBS must be a positive integer"
[[ $BCRYPT_COST =~ ^[0-9]+$ ]] && ((BCRYPT_COST >= 4 && BCRYPT_COST <= 31)) ||
    die "BENCH_BCRYPT_COST must be 4..31"
SIZE_BYTES=$(to_bytes "$SIZE")
VOL_BYTES=$(to_bytes "$VOLUME")

find_airlift
AIRLIFT_VERSION=$("$AIRLIFT" --version 2>/dev/null || echo unknown)
DR_VERSION=$("$DOCKER_REGISTRY" --version 2>/dev/null | awk '{print $NF}' || echo unknown)
SKOPEO_VERSION=$(skopeo --version 2>/dev/null | awk '{print $NF}' || echo unknown)
"$AIRLIFT" pack --help 2>&1 | grep -q -- '--authfile' && "$AIRLIFT" unpack --help 2>&1 | grep -q -- '--to' ||
    die "this airlift ($AIRLIFT_VERSION) has no registry client (pack --authfile, unpack --to)"

# --- work directory, servers, cleanup -------------------------------------------------
make_work airlift-client-bench
SERVERS=() # pids of every server this script started
cleanup() {
    local pid
    for pid in "${SERVERS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${SERVERS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    remove_work
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# layout + source registry + skopeo's layout + two bundles + pack cache + staging + two
# fresh registries; plus slack
need_kib=$((SIZE_BYTES / 1024 * 9))
avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
((avail_kib > need_kib)) || die "not enough space in $PARENT: need ~$((need_kib / 1048576)) GiB, have $((avail_kib / 1048576)) GiB"

KEYS=$WORK/keys
A_BUNDLE=$WORK/airlift-bundle
A_CACHE=$WORK/airlift-cache
A_PUSH_CACHE=$WORK/airlift-push-cache
B_OUT=$WORK/skopeo-layout
B_VOLS=$WORK/baseline-vols
STATE=$WORK/state
SKHOME=$WORK/skopeo-home
TLS=$WORK/tls
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
META=$WORK/meta.tsv
mkdir -p "$LOGS" "$TLS" "$SKHOME/run"
: >"$RESULTS"
: >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

AL=(env HOME="$STATE" XDG_STATE_HOME="$STATE/state" XDG_CACHE_HOME="$STATE/cache"
    XDG_DATA_HOME="$STATE/data" XDG_CONFIG_HOME="$STATE/config" XDG_RUNTIME_DIR="$STATE/run"
    REGISTRY_AUTH_FILE= "$AIRLIFT")
fresh_state() { rm -rf -- "$STATE"; mkdir -p "$STATE/run"; }
SK=(env HOME="$SKHOME" XDG_RUNTIME_DIR="$SKHOME/run" XDG_CONFIG_HOME="$SKHOME/config"
    XDG_DATA_HOME="$SKHOME/data" skopeo --insecure-policy)

# shellcheck source=bench/lib-registry.sh
source "$BENCH_DIR_HERE/lib-registry.sh"




# --- data -----------------------------------------------------------------------------
use_layout "$WORK/layout"
DATA_BYTES=$(find "$LAYOUT" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')
BLOBS=$(find "$LAYOUT/blobs/sha256" -type f | wc -l)
# refs.tsv: ref, manifest digest; blobs.tsv: ref, digest, size of every distinct blob (config
# and layers, platform images of an index included), each once, under the first ref using it
python3 - "$LAYOUT" "$WORK/refs.tsv" "$WORK/blobs.tsv" <<'EOF'
import json, os, sys
root, refs_out, blobs_out = sys.argv[1:]
def blob(d):
    with open(os.path.join(root, "blobs", *d.split(":"))) as f:
        return json.load(f)
with open(os.path.join(root, "index.json")) as f:
    idx = json.load(f)
seen = set()
with open(refs_out, "w") as rf, open(blobs_out, "w") as bf:
    for m in idx["manifests"]:
        ref = m["annotations"]["org.opencontainers.image.ref.name"]
        rf.write(f"{ref}\t{m['digest']}\n")
        top = blob(m["digest"])
        mans = [blob(c["digest"]) for c in top["manifests"]] if "manifests" in top else [top]
        for man in mans:
            for d in [man["config"]] + man["layers"]:
                if d["digest"] not in seen:
                    seen.add(d["digest"])
                    bf.write(f"{ref}\t{d['digest']}\t{d['size']}\n")
EOF
mapfile -t REFS < <(cut -f1 "$WORK/refs.tsv")
FETCH_REQUESTS=$(wc -l <"$WORK/blobs.tsv")
FETCH_BYTES=$(awk -F'\t' '{ s += $3 } END { printf "%.0f", s }' "$WORK/blobs.tsv")
say "${#REFS[@]} refs; $FETCH_REQUESTS distinct blobs, $FETCH_BYTES bytes"

# --- TLS and credentials --------------------------------------------------------------
# a test CA and a leaf certificate for localhost / 127.0.0.1 signed by it (rustls refuses a
# self-signed certificate used as the server's own: CaUsedAsEndEntity)
{
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 7 \
        -keyout "$TLS/ca.key" -out "$TLS/ca.crt" -subj /CN=airlift-bench-ca \
        -addext 'basicConstraints=critical,CA:TRUE' -addext 'keyUsage=critical,keyCertSign,cRLSign' &&
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
            -keyout "$TLS/dr.key" -out "$TLS/dr.csr" -subj /CN=localhost &&
        printf '%s\n' 'subjectAltName=DNS:localhost,IP:127.0.0.1' 'basicConstraints=critical,CA:FALSE' \
            'keyUsage=critical,digitalSignature' 'extendedKeyUsage=serverAuth' >"$TLS/leaf.ext" &&
        openssl x509 -req -in "$TLS/dr.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -CAcreateserial \
            -days 7 -sha256 -extfile "$TLS/leaf.ext" -out "$TLS/dr.crt"
} >"$LOGS/openssl.out" 2>&1 ||
    { cat "$LOGS/openssl.out" >&2; die "openssl could not make the certificates"; }
DR_CA=$TLS/ca.crt
CERTS=$TLS/dr-certs # --cert-dir for airlift and skopeo: DIR/ca.crt
mkdir -p "$CERTS"
cp "$DR_CA" "$CERTS/ca.crt"
BENCH_USER=bench
BENCH_PASS=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
DR_HTPASSWD=$TLS/htpasswd
make_htpasswd "$DR_HTPASSWD"
say "credentials: user $BENCH_USER; htpasswd by $HASHER, bcrypt cost $BCRYPT_COST"
AUTHFILE=$WORK/auth.json
# write_authfile PORT...: containers auth.json with the credentials for localhost:PORT
write_authfile() {
    python3 - "$AUTHFILE" "$BENCH_USER" "$BENCH_PASS" "$@" <<'EOF'
import base64, json, sys
out, user, pw, *ports = sys.argv[1:]
a = base64.b64encode(f"{user}:{pw}".encode()).decode()
json.dump({"auths": {f"localhost:{p}": {"auth": a} for p in ports}}, open(out, "w"))
EOF
}

# check_refs NAME PORT PREFIX: for every source ref, skopeo inspect --raw of
# localhost:PORT/PREFIX/bench/REF hashes to the source index.json digest
check_refs() {
    local name=$1 port=$2 prefix=$3 ref want got bad=0
    while IFS=$'\t' read -r ref want; do
        got=$("${SK[@]}" inspect --raw --cert-dir "$CERTS" --creds "$BENCH_USER:$BENCH_PASS" \
            "docker://localhost:$port/${prefix}bench/$ref" 2>>"$LOGS/inspect-$name.err" |
            sha256sum | awk '{print "sha256:" $1}') || true
        if [[ $got != "$want" ]]; then
            say "$name: ${prefix}bench/$ref has manifest $got, the source has $want"
            bad=1
        fi
    done <"$WORK/refs.tsv"
    return $bad
}

# === 1. pack from a registry ==========================================================
say "pack: starting docker-registry and loading the images (skopeo copy, untimed)"
start_docker_registry docker-registry-src "$WORK/docker-registry-src"
S_PID=$D_PID
S_PORT=$D_PORT
for ref in "${REFS[@]}"; do
    "${SK[@]}" copy -q --all --dest-cert-dir "$CERTS" --dest-creds "$BENCH_USER:$BENCH_PASS" \
        "oci:$LAYOUT:$ref" "docker://localhost:$S_PORT/bench/$ref" >>"$LOGS/load.log" 2>&1 ||
        { tail -n 20 "$LOGS/load.log" >&2; fail "skopeo copy of $ref into docker-registry failed"; }
done
check_refs source "$S_PORT" "" || fail "the source docker-registry does not hold the source's images"
write_authfile "$S_PORT"
SRC_REFS=()
for ref in "${REFS[@]}"; do SRC_REFS+=("docker://localhost:$S_PORT/bench/$ref"); done

fresh_state
"${AL[@]}" keygen --out "$KEYS" --name bench >"$LOGS/keygen.out" 2>&1 ||
    { cat "$LOGS/keygen.out" >&2; die "airlift keygen failed"; }

# warm the registry up the same way for everyone: every distinct blob fetched once (untimed)
awk -F'\t' -v p="$S_PORT" '{ printf "https://localhost:%s/v2/bench/%s/blobs/%s\n", p, $1, $2 }' \
    "$WORK/blobs.tsv" >"$WORK/urls"
CURL_CMD=(xargs -P "$JOBS" -n 1 -a "$WORK/urls" curl -sS --fail -o /dev/null --cacert "$DR_CA"
    --resolve "localhost:$S_PORT:127.0.0.1" -u "$BENCH_USER:$BENCH_PASS"
    -w '%{http_code} %{size_download}\n')
"${CURL_CMD[@]}" >/dev/null || fail "warm-up fetch failed"

prep_pack_a() { rm -rf -- "$A_BUNDLE" "$A_CACHE"; fresh_state; }
post_pack_a() { :; }
say "pack: airlift"
measure pack airlift prep_pack_a post_pack_a \
    "${AL[@]}" pack --quiet --key "$KEYS/bench.key" --out "$A_BUNDLE" --name bench \
    --volume-size "$VOL_BYTES" --authfile "$AUTHFILE" --cert-dir "$CERTS" --cache "$A_CACHE" \
    "${SRC_REFS[@]}"
meta airlift_bundle_bytes "$(du -sb "$A_BUNDLE" | awk '{print $1}')"

prep_pack_b() { rm -rf -- "$B_OUT" "$B_VOLS" "$SKHOME"; mkdir -p "$B_VOLS" "$SKHOME/run"; }
post_pack_b() { meta baseline_pack_phases "$(awk '$1 == "phases" { print $2 " " $3 " " $4 }' "$LOGS/$1.out")"; }
say "pack: skopeo copy + tar | split + sha256sum"
measure pack baseline prep_pack_b post_pack_b \
    "${DURABLE[@]}" bash -c 'set -euo pipefail
             out=$1 vols=$2 port=$3 certs=$4 creds=$5 vol=$6 refs=$7; shift 7
             t0=$EPOCHREALTIME
             while read -r ref; do
                 "$@" copy -q --all --src-cert-dir "$certs" --src-creds "$creds" \
                     "docker://localhost:$port/bench/$ref" "oci:$out:$ref"
             done <"$refs"
             t1=$EPOCHREALTIME
             cd "$vols"
             tar -cf - -C "$out" . | split -d -a 4 -b "$vol" - vol.
             t2=$EPOCHREALTIME
             sha256sum vol.* >SHA256SUMS
             t3=$EPOCHREALTIME
             awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" "BEGIN { printf \"phases %.3f %.3f %.3f\\n\", b - a, c - b, d - c }"' \
    _ "$B_OUT" "$B_VOLS" "$S_PORT" "$CERTS" "$BENCH_USER:$BENCH_PASS" "$VOL_BYTES" \
    <(printf '%s\n' "${REFS[@]}") "${SK[@]}"
rm -rf -- "$B_VOLS"

post_fetch() {
    awk -v n="$FETCH_REQUESTS" -v b="$FETCH_BYTES" '
        $1 != 200 { bad++ } { got += $2; lines++ }
        END { if (bad || lines != n || got != b) {
                printf "bench: %d requests, %d not 200, %.0f bytes (expected %d, %.0f)\n", lines, bad, got, n, b > "/dev/stderr"; exit 1 } }' \
        "$LOGS/$1.out" || fail "$1: the fetch was incomplete"
}
say "pack: raw fetch, $FETCH_REQUESTS blobs, $JOBS curl processes at a time"
measure fetch curl : post_fetch "${CURL_CMD[@]}"
stop_server "$S_PID"
rm -rf -- "$WORK/docker-registry-src" "$A_CACHE"

# === 2. push into a fresh registry ====================================================
M_PID=""
prep_push() { # a fresh docker-registry, started untimed; its port in $WORK/mirror.port
    if [[ -n $M_PID ]]; then stop_server "$M_PID"; fi
    rm -rf -- "$WORK/docker-registry-mirror" "$A_PUSH_CACHE" "$SKHOME"
    mkdir -p "$SKHOME/run"
    fresh_state
    start_docker_registry docker-registry-mirror "$WORK/docker-registry-mirror"
    M_PID=$D_PID
    M_PORT=$D_PORT
    write_authfile "$M_PORT"
    echo "$M_PORT" >"$WORK/mirror.port"
}
post_push() { check_refs "$1" "$M_PORT" mirror/ || fail "$1: the mirror does not hold the source's images"; }
say "push: airlift unpack --to"
measure push airlift prep_push post_push \
    bash -c 'port=$(cat "$1") bundle=$2 key=$3 auth=$4 certs=$5 cache=$6; shift 6
             exec "$@" unpack --quiet "$bundle" --key "$key" --to "docker://localhost:$port/mirror" \
                 --authfile "$auth" --cert-dir "$certs" --cache "$cache" --results "$cache/results"' \
    _ "$WORK/mirror.port" "$A_BUNDLE" "$KEYS/bench.pub" "$AUTHFILE" "$CERTS" "$A_PUSH_CACHE" "${AL[@]}"
say "push: skopeo copy oci: docker://"
measure push baseline prep_push post_push \
    "${DURABLE[@]}" bash -c 'set -euo pipefail
             port=$(cat "$1") layout=$2 certs=$3 creds=$4 refs=$5; shift 5
             while read -r ref; do
                 "$@" copy -q --all --dest-cert-dir "$certs" --dest-creds "$creds" \
                     "oci:$layout:$ref" "docker://localhost:$port/mirror/bench/$ref"
             done <"$refs"' \
    _ "$WORK/mirror.port" "$LAYOUT" "$CERTS" "$BENCH_USER:$BENCH_PASS" \
    <(printf '%s\n' "${REFS[@]}") "${SK[@]}"
stop_server "$M_PID"

# --- report ---------------------------------------------------------------------------
rc=0
python3 - "$RESULTS" "$META" "$DATA_BYTES" "$BLOBS" "${#REFS[@]}" "$FETCH_REQUESTS" "$FETCH_BYTES" \
    "$JOBS" "$RUNS" "$AIRLIFT_VERSION" "$DR_VERSION" "$SKOPEO_VERSION" "${BENCH_OUT:-}" <<'EOF' || rc=$?
import json, os, sys
(results, metaf, data, blobs, refs, reqs, fbytes, jobs, runs, version, drv, skv, out) = sys.argv[1:]
data, blobs, refs, reqs, fbytes, jobs, runs = map(int, (data, blobs, refs, reqs, fbytes, jobs, runs))
meta = dict(l.rstrip("\n").split("\t", 1) for l in open(metaf))
rows = {}
for line in open(results):
    step, tool, sec, rss = line.split()
    rows.setdefault(step, {})[tool] = {"seconds": float(sec), "peak_rss_mib": int(rss) / 1024,
                                       "gb_per_s": fbytes / 1e9 / max(float(sec), 1e-9)}
print(f"\ndata: {data} bytes ({data / 1e9:.2f} GB) in {blobs} blobs, {refs} refs; {fbytes} bytes "
      f"({fbytes / 1e9:.2f} GB) in {reqs} distinct registry blobs; {os.cpu_count()} CPUs; {runs} run(s), "
      f"fastest shown; {version}; docker-registry {drv}; skopeo {skv}; TLS + basic auth on loopback")
a_pack, b_pack = rows["pack"]["airlift"], rows["pack"]["baseline"]
curl = rows["fetch"]["curl"]
a_push, b_push = rows["push"]["airlift"], rows["push"]["baseline"]
lines = [
    ("pack vs skopeo+tar+sha", a_pack, b_pack, b_pack["seconds"] / a_pack["seconds"], ">= 5x faster", lambda r: r >= 5),
    ("pack vs curl fetch", a_pack, curl, a_pack["seconds"] / curl["seconds"], "<= 1.5x curl's time", lambda r: r <= 1.5),
    ("push vs skopeo", a_push, b_push, b_push["seconds"] / a_push["seconds"], ">= 2x faster", lambda r: r >= 2),
]
hdr = ("comparison", "airlift s", "other s", "ratio", "target", "airlift GB/s", "other GB/s", "airlift MiB", "other MiB")
fmt = "{:<24}" + "{:>12}" * 3 + "  {:<20}" + "{:>13}" * 4
print("\n" + fmt.format(*hdr))
failed = []
for name, a, b, ratio, target, ok in lines:
    print(fmt.format(name, f"{a['seconds']:.2f}", f"{b['seconds']:.2f}", f"{ratio:.2f}x", target,
                     f"{a['gb_per_s']:.2f}", f"{b['gb_per_s']:.2f}", f"{a['peak_rss_mib']:.1f}", f"{b['peak_rss_mib']:.1f}"))
    if not ok(ratio):
        failed.append(f"{name}: {ratio:.2f}x (target {target})")
print("\nratio: baseline / airlift, except 'pack vs curl': airlift / curl. GB/s = distinct registry blob bytes.")
print("MiB = peak RSS of the largest process of the timed command (docker-registry not included).")
if "baseline_pack_phases" in meta:
    s, t, h = meta["baseline_pack_phases"].split()
    print(f"baseline pack, last run: skopeo copy {float(s):.2f} s, tar | split {float(t):.2f} s, sha256sum {float(h):.2f} s")
print("\ntargets: " + ("all met" if not failed else "MISSED:\n  " + "\n  ".join(failed)))
if out:
    json.dump({"data_bytes": data, "blobs": blobs, "refs": refs, "fetch_requests": reqs, "fetch_bytes": fbytes,
               "jobs": jobs, "runs": runs, "airlift_version": version, "docker_registry_version": drv,
               "skopeo_version": skv, "steps": rows, "meta": meta, "targets_missed": failed},
              open(out, "w"), indent=2)
sys.exit(3 if failed else 0)
EOF
case $rc in
0) ;;
3) if [[ ${BENCH_STRICT:-0} == 1 ]]; then exit 1; fi ;;
*) die "writing the report failed" ;;
esac
