#!/usr/bin/env bash
# airlift registry benchmark: the airlift registry against Debian's docker-registry (CNCF
# distribution), measured in the same run on the same data. See bench/README.md.
#   1. pull: every blob of every image, fetched by parallel curl processes over TLS with
#      basic auth, from `airlift serve` and from docker-registry (both loaded by skopeo);
#   2. unpack into a fresh registry: `airlift unpack BUNDLE --root FRESH` against
#      `cat vol.* | tar -x` then `skopeo copy oci: docker://` into a fresh docker-registry.
# Environment:
#   BENCH_SIZE          size of the generated OCI layout (default 2G; K/M/G/T = powers of 1024)
#   BENCH_VOLUME_SIZE   volume size for airlift pack and split (default 1G)
#   BENCH_PULL_JOBS     parallel curl processes for the pull (default 8)
#   BENCH_HTTP1=1       make curl use HTTP/1.1 with both (default: what it negotiates; docker-registry
#                       offers HTTP/2, airlift HTTP/1.1)
#   BENCH_RUNS          runs per measurement; the fastest is reported (default 1)
#   BENCH_DIR           where the work directory is created (default /var/tmp)
#   BENCH_KEEP=1        keep the work directory
#   BENCH_OUT           also write the results as JSON to this file
#   BENCH_STRICT=1      exit 1 when a target is missed
#   BENCH_BCRYPT_COST   bcrypt cost of docker-registry's htpasswd (default: the cost of the
#                       hash airlift install wrote, so both check the same work; 10 without one)
#   BENCH_SKIP_AIRLIFT=1  measure the docker-registry / shell side only (to test the harness)
#   AIRLIFT             airlift binary to use (skips `cargo build --release`)
set -euo pipefail
export LC_ALL=C

BENCH_DIR_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$BENCH_DIR_HERE")
SIZE=${BENCH_SIZE:-2G}
VOLUME=${BENCH_VOLUME_SIZE:-1G}
RUNS=${BENCH_RUNS:-1}
JOBS=${BENCH_PULL_JOBS:-8}
CURL_HTTP=()
if [[ ${BENCH_HTTP1:-0} == 1 ]]; then CURL_HTTP=(--http1.1); fi
SKIP_AIRLIFT=${BENCH_SKIP_AIRLIFT:-0}
BCRYPT_COST=${BENCH_BCRYPT_COST:-10}
BCRYPT_COST_SET=${BENCH_BCRYPT_COST:+1}
DOCKER_REGISTRY=/usr/bin/docker-registry

# shellcheck source=bench/lib.sh
source "$BENCH_DIR_HERE/lib.sh"

# --- prerequisites --------------------------------------------------------------------
[[ -x $DOCKER_REGISTRY ]] ||
    die "$DOCKER_REGISTRY is missing; install it: apt-get install docker-registry"
require_tools python3 tar split cat sync curl openssl skopeo xargs sha256sum
check_cold
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || die "BENCH_PULL_JOBS must be a positive integer"
[[ $BCRYPT_COST =~ ^[0-9]+$ ]] && ((BCRYPT_COST >= 4 && BCRYPT_COST <= 31)) ||
    die "BENCH_BCRYPT_COST must be 4..31"

SIZE_BYTES=$(to_bytes "$SIZE")
VOL_BYTES=$(to_bytes "$VOLUME")

# --- build ----------------------------------------------------------------------------
find_airlift
AIRLIFT_VERSION=$("$AIRLIFT" --version 2>/dev/null || echo unknown)
DR_VERSION=$("$DOCKER_REGISTRY" --version 2>/dev/null | awk '{print $NF}' || echo unknown)
SKOPEO_VERSION=$(skopeo --version 2>/dev/null | awk '{print $NF}' || echo unknown)

# Is the airlift registry (install, serve, unpack --root) in this build?
registry_ready() {
    local h
    h=$("$AIRLIFT" serve --help 2>&1) || return 1
    ! grep -qi 'not implemented' <<<"$h" || return 1
    "$AIRLIFT" install --help 2>&1 | grep -q -- '--no-start' || return 1
    "$AIRLIFT" unpack --help 2>&1 | grep -q -- '--root' || return 1
}
if [[ $SKIP_AIRLIFT == 1 ]]; then
    say "BENCH_SKIP_AIRLIFT=1: measuring the docker-registry / shell side only"
elif ! registry_ready; then
    die "this airlift ($AIRLIFT_VERSION) has no registry yet (serve / install --no-start / unpack --root); set BENCH_SKIP_AIRLIFT=1 to run the docker-registry side alone"
fi
UNPACK_EXTRA=()
if [[ $SKIP_AIRLIFT != 1 ]]; then
    # unpack --root installs the root on first use, and would start a systemd unit where
    # systemd runs the host: refuse that unless unpack can be told not to.
    if "$AIRLIFT" unpack --help 2>&1 | grep -q -- '--no-start'; then
        UNPACK_EXTRA+=(--no-start)
    elif [[ -d /run/systemd/system ]]; then
        die "systemd runs this host and 'airlift unpack --root' has no --no-start: it would start a registry service; run this benchmark in a container or VM without systemd"
    fi
fi

# --- work directory, servers, cleanup -------------------------------------------------
make_work airlift-registry-bench
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
# part 1: layout + two registries' storage (freed after it); part 2: layout + two bundles +
# extracted layout + two fresh registries; plus slack
need_kib=$((SIZE_BYTES / 1024 * 13 / 2))
avail_kib=$(df -Pk "$WORK" | awk 'NR==2 {print $4}')
((avail_kib > need_kib)) || die "not enough space in $PARENT: need ~$((need_kib / 1048576)) GiB, have $((avail_kib / 1048576)) GiB"

KEYS=$WORK/keys
A_BUNDLE=$WORK/airlift-bundle
B_BUNDLE=$WORK/baseline-bundle
B_OUT=$WORK/baseline-out
A_FRESH=$WORK/airlift-fresh-root
D_FRESH=$WORK/docker-registry-fresh
STATE=$WORK/state
SKHOME=$WORK/skopeo-home
TLS=$WORK/tls
LOGS=$WORK/logs
RESULTS=$WORK/results.tsv
META=$WORK/meta.tsv
mkdir -p "$LOGS" "$TLS" "$SKHOME"
: >"$RESULTS"
: >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

# airlift keeps state under HOME/XDG dirs: a private, fresh set for every run (an array, not
# a function: /usr/bin/time must exec it; env execs airlift, so RSS and pid are airlift's).
AL=(env HOME="$STATE" XDG_STATE_HOME="$STATE/state" XDG_CACHE_HOME="$STATE/cache"
    XDG_DATA_HOME="$STATE/data" XDG_CONFIG_HOME="$STATE/config" "$AIRLIFT")
fresh_state() { rm -rf -- "$STATE"; mkdir -p "$STATE"; }
# skopeo with a private HOME; --insecure-policy: no dependency on /etc/containers/policy.json
SK=(env HOME="$SKHOME" XDG_RUNTIME_DIR="$SKHOME/run" XDG_CONFIG_HOME="$SKHOME/config"
    XDG_DATA_HOME="$SKHOME/data" skopeo --insecure-policy)
mkdir -p "$SKHOME/run"

# shellcheck source=bench/lib-registry.sh
source "$BENCH_DIR_HERE/lib-registry.sh"
# json_creds FILE: print "user<TAB>password<TAB>ca_file<TAB>url" from an airlift JSON document
# (install's top level, or unpack's registry.installed; searched for wherever they are)
json_creds() {
    python3 - "$1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
def find(o):
    if isinstance(o, dict):
        if "password" in o and "ca_file" in o:
            return o
        for v in o.values():
            r = find(v)
            if r:
                return r
    elif isinstance(o, list):
        for v in o:
            r = find(v)
            if r:
                return r
reg = doc.get("registry") if isinstance(doc, dict) else None
inst = reg.get("installed") if isinstance(reg, dict) else None
inst = inst if isinstance(inst, dict) and "password" in inst else find(doc)
if not inst:
    sys.exit(f"bench: no user/password/ca_file in {sys.argv[1]}")
print("\t".join(str(inst.get(k) or "") for k in ("user", "password", "ca_file", "url")))
EOF
}

# --- data -----------------------------------------------------------------------------
use_layout "$WORK/layout"
REPO_NAME=$(basename "$LAYOUT") # the repository airlift unpack writes to
DATA_BYTES=$(find "$LAYOUT" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f", s }')
BLOBS=$(find "$LAYOUT/blobs/sha256" -type f | wc -l)

# refs.tsv: ref, manifest digest; pull.tsv: ref, digest, size for every blob (config and
# layers) of every image, platform images of an index included, once per ref
# (BENCH_PULL_DISTINCT=1: every distinct blob once, under the first ref using it)
python3 - "$LAYOUT" "$WORK/refs.tsv" "$WORK/pull.tsv" "${BENCH_PULL_DISTINCT:-0}" <<'EOF'
import json, os, sys
root, refs_out, pull_out, distinct = sys.argv[1:]
pulled = set()
def blob(d):
    with open(os.path.join(root, "blobs", *d.split(":"))) as f:
        return json.load(f)
with open(os.path.join(root, "index.json")) as f:
    idx = json.load(f)
with open(refs_out, "w") as rf, open(pull_out, "w") as pf:
    for m in idx["manifests"]:
        ref = m["annotations"]["org.opencontainers.image.ref.name"]
        rf.write(f"{ref}\t{m['digest']}\n")
        top = blob(m["digest"])
        mans = [blob(c["digest"]) for c in top["manifests"]] if "manifests" in top else [top]
        seen = {}
        for man in mans:
            for d in [man["config"]] + man["layers"]:
                seen.setdefault(d["digest"], d["size"])
        for d, s in seen.items():
            if distinct == "1" and d in pulled:
                continue
            pulled.add(d)
            pf.write(f"{ref}\t{d}\t{s}\n")
EOF
mapfile -t REFS < <(cut -f1 "$WORK/refs.tsv")
PULL_REQUESTS=$(wc -l <"$WORK/pull.tsv")
PULL_BYTES=$(awk -F'\t' '{ s += $3 } END { printf "%.0f", s }' "$WORK/pull.tsv")
say "${#REFS[@]} refs; a pull round is $PULL_REQUESTS blob requests, $PULL_BYTES bytes"

# --- TLS and credentials --------------------------------------------------------------
# docker-registry: a self-signed certificate for localhost / 127.0.0.1, trusted by curl
# (--cacert) and skopeo (--dest-cert-dir / --cert-dir: DIR/ca.crt)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 -days 7 \
    -keyout "$TLS/dr.key" -out "$TLS/dr.crt" -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' >"$LOGS/openssl.out" 2>&1 ||
    { cat "$LOGS/openssl.out" >&2; die "openssl could not make a certificate"; }
DR_CA=$TLS/dr.crt
mkdir -p "$TLS/dr-certs"
cp "$DR_CA" "$TLS/dr-certs/ca.crt"

BENCH_USER=bench
fresh_state
if [[ $SKIP_AIRLIFT != 1 ]]; then
    # the airlift registry for the pull: installed (not started), then served on loopback
    A_ROOT=$WORK/airlift-root
    A_PORT=$(free_port)
    "${AL[@]}" install --root "$A_ROOT" --hostname localhost --port "$A_PORT" --user "$BENCH_USER" \
        --no-start --json >"$LOGS/install.json" 2>"$LOGS/install.err" ||
        { cat "$LOGS/install.err" "$LOGS/install.json" >&2; fail "airlift install failed"; }
    IFS=$'\t' read -r A_USER A_PASS A_CA_FILE _ < <(json_creds "$LOGS/install.json") ||
        fail "airlift install --json printed no credentials"
    [[ -n $A_USER && -n $A_PASS && -f $A_CA_FILE ]] ||
        fail "airlift install --json: user '$A_USER', password, CA file '$A_CA_FILE' (missing?)"
    mkdir -p "$TLS/al-certs"
    cp "$A_CA_FILE" "$TLS/al-certs/ca.crt"
    A_CA=$TLS/al-certs/ca.crt
    BENCH_USER=$A_USER
    BENCH_PASS=$A_PASS
    # docker-registry gets the same user and password, hashed at the same bcrypt cost
    A_HTPASSWD=$A_ROOT/htpasswd
    if [[ -z $BCRYPT_COST_SET && -f $A_HTPASSWD ]]; then
        c=$(sed -n "s/^$BENCH_USER:\$2[abxy]\?\$\([0-9][0-9]\)\$.*/\1/p" "$A_HTPASSWD" | head -n 1)
        if [[ -n $c ]]; then BCRYPT_COST=$((10#$c)); fi
    fi
else
    BENCH_PASS=$(python3 -c 'import secrets; print(secrets.token_urlsafe(18))')
fi

DR_HTPASSWD=$TLS/htpasswd
make_htpasswd "$DR_HTPASSWD"
say "credentials: user $BENCH_USER; docker-registry htpasswd by $HASHER, bcrypt cost $BCRYPT_COST"


# load REGISTRY_NAME PORT CERTDIR SRC_LAYOUT REPO_PREFIX: skopeo copy every ref (--all: an
# index with all its platforms; a no-op for a single image) to localhost:PORT/PREFIX...
load_images() {
    local name=$1 port=$2 certdir=$3 src=$4 prefix=$5 ref
    for ref in "${REFS[@]}"; do
        "${SK[@]}" copy -q --all --dest-cert-dir "$certdir" --dest-creds "$BENCH_USER:$BENCH_PASS" \
            "oci:$src:$ref" "docker://localhost:$port/$prefix$ref" >>"$LOGS/load-$name.log" 2>&1 ||
            { tail -n 20 "$LOGS/load-$name.log" >&2; fail "skopeo copy of $ref into $name failed"; }
    done
}

# check_pull NAME PORT CA PREFIX: untimed, fetch every distinct blob once and check its sha256
# and size; blobs need credentials; median latency of an authenticated GET /v2/ (a new TLS
# connection and a password check each). Also warms both servers up the same way.
check_pull() {
    python3 - "$1" "$2" "$3" "$BENCH_USER" "$BENCH_PASS" "$4" "$WORK/pull.tsv" <<'EOF'
import base64, hashlib, http.client, ssl, statistics, sys, time
name, port, ca, user, pw, prefix, pull = sys.argv[1:]
ctx = ssl.create_default_context(cafile=ca)
auth = {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}
def get(path, headers):
    c = http.client.HTTPSConnection("localhost", int(port), context=ctx, timeout=120)
    c.request("GET", path, headers=headers)
    return c, c.getresponse()
seen = set()
ok = True
for line in open(pull):
    ref, digest, size = line.split()
    if digest in seen:
        continue
    seen.add(digest)
    c, r = get(f"/v2/{prefix}{ref}/blobs/{digest}", auth)
    h, n = hashlib.sha256(), 0
    while b := r.read(1 << 20):
        h.update(b)
        n += len(b)
    c.close()
    if r.status != 200 or "sha256:" + h.hexdigest() != digest or n != int(size):
        print(f"bench: {name}: {prefix}{ref} blob {digest}: HTTP {r.status}, {n} bytes, "
              f"sha256:{h.hexdigest()}", file=sys.stderr)
        ok = False
ref, digest, _ = open(pull).readline().split()
c, r = get(f"/v2/{prefix}{ref}/blobs/{digest}", {})
if r.status != 401:
    print(f"bench: {name}: a blob without credentials answered {r.status} (expected 401)", file=sys.stderr)
    ok = False
c.close()
lat = []
for _ in range(7):
    t = time.perf_counter()
    c, r = get("/v2/", auth)
    r.read()
    c.close()
    lat.append((time.perf_counter() - t) * 1000)
    if r.status != 200:
        ok = False
print(f"{statistics.median(lat):.1f}")
sys.exit(0 if ok else 1)
EOF
}

# pull URL lists: one curl process per blob request, JOBS at a time
pull_urls() { # PORT PREFIX OUT
    awk -F'\t' -v p="$1" -v pre="$2" '{ printf "https://localhost:%s/v2/%s%s/blobs/%s\n", p, pre, $1, $2 }' \
        "$WORK/pull.tsv" >"$3"
}
# post-pull check of the curl -w lines: every request 200, every byte there
check_pull_output() { # LOGNAME
    local out=$LOGS/$1.out
    awk -v n="$PULL_REQUESTS" -v b="$PULL_BYTES" '
        $1 != 200 { bad++ } { got += $2; lines++ }
        END {
            if (bad || lines != n || got != b) {
                printf "bench: %d requests, %d not 200, %.0f bytes (expected %d requests, %.0f bytes)\n", lines, bad, got, n, b > "/dev/stderr"
                exit 1
            }
        }' "$out" || fail "$1: the pull was incomplete (see $out)"
}
pull_cmd() { # PORT CA URLS: sets PULL_CMD
    PULL_CMD=(xargs -P "$JOBS" -n 1 -a "$3" curl "${CURL_HTTP[@]}" -sS --fail -o /dev/null --cacert "$2"
        --resolve "localhost:$1:127.0.0.1" -u "$BENCH_USER:$BENCH_PASS"
        -w '%{http_code} %{size_download} %{http_version}\n')
}
http_version() { awk '{ print $3 }' "$LOGS/$1.out" | sort | uniq -c | awk '{ printf "%sHTTP/%s x%s", (NR > 1 ? ", " : ""), $2, $1 }'; }

# === 1. pull ==========================================================================
say "pull: starting docker-registry and loading the images (skopeo copy, untimed)"
start_docker_registry docker-registry-pull "$WORK/docker-registry-pull"
DP_PID=$D_PID
DP_PORT=$D_PORT
load_images docker-registry-pull "$DP_PORT" "$TLS/dr-certs" "$LAYOUT" bench/
meta dr_load_hwm_kib "$(hwm_kib "$DP_PID")"
if [[ $SKIP_AIRLIFT != 1 ]]; then
    say "pull: starting airlift serve and loading the images (skopeo copy, untimed)"
    start_server "$LOGS/airlift-serve-pull.log" "${AL[@]}" serve --root "$A_ROOT" --addr "127.0.0.1:$A_PORT"
    AP_PID=$SERVER_PID
    wait_ready "airlift serve" "$AP_PID" "$A_PORT" "$A_CA" "$LOGS/airlift-serve-pull.log"
    check_auth "airlift serve" "$A_PORT" "$A_CA" "$BENCH_USER" "$BENCH_PASS"
    load_images airlift-pull "$A_PORT" "$TLS/al-certs" "$LAYOUT" bench/
    meta al_load_hwm_kib "$(hwm_kib "$AP_PID")"
fi

say "pull: checking every blob on each registry (untimed; also warms both up)"
lat=$(check_pull docker-registry "$DP_PORT" "$DR_CA" bench/) || fail "docker-registry serves wrong content"
meta dr_auth_latency_ms "$lat"
if [[ $SKIP_AIRLIFT != 1 ]]; then
    lat=$(check_pull airlift "$A_PORT" "$A_CA" bench/) || fail "airlift serve serves wrong content"
    meta al_auth_latency_ms "$lat"
fi

say "pull: $PULL_REQUESTS blob requests ($PULL_BYTES bytes) per round, $JOBS curl processes at a time"
pull_urls "$DP_PORT" bench/ "$WORK/urls-docker-registry"
post_pull_d() {
    check_pull_output "$1"
    R_RSS=$(hwm_kib "$DP_PID")
    meta dr_http "$(http_version "$1")"
}
pull_cmd "$DP_PORT" "$DR_CA" "$WORK/urls-docker-registry"
D_PULL_CMD=("${PULL_CMD[@]}")
if [[ $SKIP_AIRLIFT != 1 ]]; then
    pull_urls "$A_PORT" bench/ "$WORK/urls-airlift"
    post_pull_a() {
        check_pull_output "$1"
        R_RSS=$(hwm_kib "$AP_PID")
        meta al_http "$(http_version "$1")"
    }
    pull_cmd "$A_PORT" "$A_CA" "$WORK/urls-airlift"
    reset_hwm "$AP_PID"
    measure pull airlift : post_pull_a "${PULL_CMD[@]}"
    stop_server "$AP_PID"
fi
reset_hwm "$DP_PID"
measure pull baseline : post_pull_d "${D_PULL_CMD[@]}"
stop_server "$DP_PID"
rm -rf -- "$WORK/docker-registry-pull" "${A_ROOT:-/nonexistent-airlift-root}"

# === 2. unpack into a fresh registry ==================================================
fresh_state
say "unpack: making the bundles (untimed)"
if [[ $SKIP_AIRLIFT != 1 ]]; then
    "${AL[@]}" keygen --out "$KEYS" --name bench >"$LOGS/keygen.out" 2>&1 ||
        { cat "$LOGS/keygen.out" >&2; die "airlift keygen failed"; }
    "${AL[@]}" pack --quiet --key "$KEYS/bench.key" --out "$A_BUNDLE" --name bench \
        --volume-size "$VOL_BYTES" "oci:$LAYOUT" >"$LOGS/pack.out" 2>&1 ||
        { tail -n 20 "$LOGS/pack.out" >&2; fail "airlift pack failed"; }
fi
mkdir -p "$B_BUNDLE"
(cd "$B_BUNDLE" && tar -cf - -C "$LAYOUT" . | split -d -a 4 -b "$VOL_BYTES" - vol.) ||
    fail "tar | split failed"
printf '%s\n' "${REFS[@]}" >"$WORK/refs.txt"

if [[ $SKIP_AIRLIFT != 1 ]]; then
    prep_unpack_a() { rm -rf -- "$A_FRESH"; fresh_state; }
    post_unpack_a() { cp "$LOGS/$1.out" "$WORK/unpack.json"; }
    measure unpack airlift prep_unpack_a post_unpack_a \
        "${AL[@]}" unpack --json "${UNPACK_EXTRA[@]}" "$A_BUNDLE" --key "$KEYS/bench.pub" \
        --root "$A_FRESH" --hostname localhost
fi

# baseline: a fresh docker-registry (started untimed) for every run; the timed command reads
# its port from a file
D_FRESH_PID=""
prep_unpack_b() {
    if [[ -n $D_FRESH_PID ]]; then stop_server "$D_FRESH_PID"; fi
    rm -rf -- "$B_OUT" "$D_FRESH"
    mkdir -p "$B_OUT"
    rm -rf -- "$SKHOME"
    mkdir -p "$SKHOME/run"
    start_docker_registry docker-registry-fresh "$D_FRESH"
    D_FRESH_PID=$D_PID
    echo "$D_PORT" >"$WORK/fresh.port"
    reset_hwm "$D_FRESH_PID"
}
post_unpack_b() {
    local h
    h=$(hwm_kib "$D_FRESH_PID")
    meta dr_unpack_hwm_kib "$h"
    meta baseline_unpack_pipeline_kib "$T_RSS"
    meta baseline_unpack_phases "$(awk '$1 == "phases" { print $2 " " $3 }' "$LOGS/$1.out")"
    if ((h > R_RSS)); then R_RSS=$h; fi
}
say "unpack"
measure unpack baseline prep_unpack_b post_unpack_b \
    "${DURABLE[@]}" bash -c 'set -euo pipefail
             bundle=$1 out=$2 port=$(cat "$3") refs=$4 certs=$5 creds=$6 repo=$7; shift 7
             t0=$EPOCHREALTIME
             cat "$bundle"/vol.* | tar -xf - -C "$out"
             t1=$EPOCHREALTIME
             while read -r ref; do
                 "$@" copy -q --all --dest-cert-dir "$certs" --dest-creds "$creds" \
                     "oci:$out:$ref" "docker://localhost:$port/$repo:$ref"
             done <"$refs"
             t2=$EPOCHREALTIME
             awk -v a="$t0" -v b="$t1" -v c="$t2" "BEGIN { printf \"phases %.3f %.3f\\n\", b - a, c - b }"' \
    _ "$B_BUNDLE" "$B_OUT" "$WORK/fresh.port" "$WORK/refs.txt" "$TLS/dr-certs" \
    "$BENCH_USER:$BENCH_PASS" "$REPO_NAME" "${SK[@]}"

# --- correctness of the fresh registries (untimed) ------------------------------------
# check_refs NAME PORT CERTDIR USER PASS MAP: for every "REPO:TAG<TAB>DIGEST" line of MAP, the
# manifest served for REPO:TAG hashes to DIGEST (the source's), and skopeo inspect (which
# reads the config too) works
check_refs() {
    local name=$1 port=$2 certdir=$3 user=$4 pass=$5 map=$6 path want got bad=0
    while IFS=$'\t' read -r path want; do
        got=$("${SK[@]}" inspect --raw --cert-dir "$certdir" --creds "$user:$pass" \
            "docker://localhost:$port/$path" 2>>"$LOGS/inspect-$name.err" | sha256sum | awk '{print "sha256:" $1}') || true
        if [[ $got != "$want" ]]; then
            say "$name: $path has manifest $got, the source has $want"
            bad=1
        elif ! "${SK[@]}" inspect --cert-dir "$certdir" --creds "$user:$pass" \
            "docker://localhost:$port/$path" >/dev/null 2>>"$LOGS/inspect-$name.err"; then
            say "$name: skopeo inspect $path failed (see $LOGS/inspect-$name.err)"
            bad=1
        fi
    done <"$map"
    return $bad
}
awk -F'\t' -v r="$REPO_NAME" '{ print r ":" $1 "\t" $2 }' "$WORK/refs.tsv" >"$WORK/baseline-map.tsv"
say "checking every ref in both fresh registries with skopeo inspect"
check_refs docker-registry "$D_PORT" "$TLS/dr-certs" "$BENCH_USER" "$BENCH_PASS" "$WORK/baseline-map.tsv" ||
    fail "the baseline's docker-registry does not hold the source's images"
stop_server "$D_FRESH_PID"
if [[ $SKIP_AIRLIFT != 1 ]]; then
    IFS=$'\t' read -r F_USER F_PASS F_CA_FILE F_URL < <(json_creds "$WORK/unpack.json") ||
        fail "airlift unpack --json printed no credentials (registry.installed)"
    [[ -n $F_USER && -n $F_PASS && -f $F_CA_FILE ]] ||
        fail "airlift unpack --json: user '$F_USER', password, CA file '$F_CA_FILE' (missing?)"
    mkdir -p "$TLS/fresh-certs"
    cp "$F_CA_FILE" "$TLS/fresh-certs/ca.crt"
    F_PORT=$(free_port)
    start_server "$LOGS/airlift-serve-fresh.log" "${AL[@]}" serve --root "$A_FRESH" --addr "127.0.0.1:$F_PORT"
    F_PID=$SERVER_PID
    wait_ready "airlift serve (fresh root)" "$F_PID" "$F_PORT" "$TLS/fresh-certs/ca.crt" "$LOGS/airlift-serve-fresh.log"
    check_auth "airlift serve (fresh root)" "$F_PORT" "$TLS/fresh-certs/ca.crt" "$F_USER" "$F_PASS"
    # where unpack says each ref went (registry.images[].reference, its host:port dropped); every
    # source ref must be there
    python3 - "$WORK/unpack.json" "$WORK/refs.tsv" "$WORK/airlift-map.tsv" "$REPO_NAME" <<'EOF' ||
import json, sys
doc, refs, out, repo = sys.argv[1:]
with open(doc) as f:
    d = json.load(f)
reg = d.get("registry") if isinstance(d, dict) else None
imgs = reg.get("images") if isinstance(reg, dict) else None
src = [l.rstrip("\n").split("\t") for l in open(refs)]
if not imgs:
    print(f"bench: unpack --json lists no registry.images; checking {repo}:REF", file=sys.stderr)
    paths = {r: f"{repo}:{r}" for r, _ in src}
else:
    paths = {}
    for i in imgs:
        path = i["reference"].split("/", 1)[1]  # drop HOST:PORT
        paths[path.rsplit(":", 1)[1]] = path
ok = True
with open(out, "w") as f:
    for ref, digest in src:
        if ref not in paths:
            print(f"bench: unpack --json does not list {ref}", file=sys.stderr)
            ok = False
            continue
        if paths[ref] != f"{repo}:{ref}":
            print(f"bench: note: airlift put {ref} at {paths[ref]}, the baseline at {repo}:{ref}", file=sys.stderr)
        f.write(f"{paths[ref]}\t{digest}\n")
sys.exit(0 if ok else 1)
EOF
        fail "airlift unpack --json does not account for every ref"
    check_refs airlift "$F_PORT" "$TLS/fresh-certs" "$F_USER" "$F_PASS" "$WORK/airlift-map.tsv" ||
        fail "the registry airlift unpacked into does not hold the source's images"
    stop_server "$F_PID"
fi

# --- report ---------------------------------------------------------------------------
rc=0
python3 - "$RESULTS" "$META" "$DATA_BYTES" "$BLOBS" "${#REFS[@]}" "$PULL_REQUESTS" "$PULL_BYTES" \
    "$JOBS" "$VOL_BYTES" "$RUNS" "$AIRLIFT_VERSION" "$DR_VERSION" "$SKOPEO_VERSION" "$HASHER" \
    "$BCRYPT_COST" "$SKIP_AIRLIFT" "${BENCH_OUT:-}" <<'EOF' || rc=$?
import json, os, sys

(results, metaf, data, blobs, refs, reqs, pbytes, jobs, vol, runs, version, drv, skv, hasher,
 cost, skip, out) = sys.argv[1:]
data, blobs, refs, reqs, pbytes, jobs, vol, runs, cost = map(
    int, (data, blobs, refs, reqs, pbytes, jobs, vol, runs, cost))
skip = skip == "1"
meta = {}
with open(metaf) as f:
    for line in f:
        k, v = line.rstrip("\n").split("\t", 1)
        meta[k] = v
rows = {}
with open(results) as f:
    for line in f:
        step, tool, sec, rss = line.split()
        nbytes = pbytes if step == "pull" else data
        rows.setdefault(step, {})[tool] = {
            "seconds": float(sec),
            "gb_per_s": nbytes / 1e9 / max(float(sec), 1e-9),
            "peak_rss_mib": int(rss) / 1024,
        }
cpus = os.cpu_count()
print(f"\ndata: {data} bytes ({data / 1e9:.2f} GB, {data / 2**30:.2f} GiB) in {blobs} blobs, {refs} refs; "
      f"{cpus} CPUs; {runs} run(s), fastest shown; {version}; docker-registry {drv}; skopeo {skv}")
print(f"pull: {reqs} blob requests, {pbytes} bytes ({pbytes / 1e9:.2f} GB) per round, "
      f"{jobs} curl processes at a time, TLS + basic auth (bcrypt cost {cost}; docker-registry's "
      f"htpasswd by {hasher})")
hdr = ("step", "airlift s", "baseline s", "ratio", "airlift GB/s", "baseline GB/s",
       "airlift MiB", "baseline MiB")
print("\n" + "  ".join(f"{h:>13}" if i else f"{h:<7}" for i, h in enumerate(hdr)))
failed = []
targets = {"pull": 1.0, "unpack": 10.0}
gbs = lambda x: f"{x:.2f}" if x >= 0.1 else f"{x:.3f}"
for step in ("pull", "unpack"):
    a, b = rows[step].get("airlift"), rows[step]["baseline"]
    if a:
        ratio = b["seconds"] / max(a["seconds"], 1e-9)
        rows[step]["ratio"] = ratio
        ac = (f"{a['seconds']:.2f}", f"{ratio:.2f}x", gbs(a['gb_per_s']), f"{a['peak_rss_mib']:.1f}")
        if ratio < targets[step]:
            failed.append(f"{step} is {ratio:.2f}x the baseline (target >= {targets[step]:g}x)")
    else:
        ac = ("-",) * 4
    cells = (ac[0], f"{b['seconds']:.2f}", ac[1], ac[2], gbs(b['gb_per_s']), ac[3],
             f"{b['peak_rss_mib']:.1f}")
    print(f"{step:<7}  " + "  ".join(f"{c:>13}" for c in cells))
print("\npull: baseline = docker-registry; MiB = the server's peak RSS during the pull; GB/s = bytes pulled")
if "al_http" in meta or "dr_http" in meta:
    print(f"      protocol: airlift {meta.get('al_http', '-')}; docker-registry {meta.get('dr_http', '-')}")
if "dr_auth_latency_ms" in meta:
    print(f"      authenticated GET /v2/ on a new connection (median of 7): airlift "
          f"{meta.get('al_auth_latency_ms', '-')} ms, docker-registry {meta['dr_auth_latency_ms']} ms")
    print(f"      (docker-registry checks the bcrypt hash on every request, skopeo's pushes included; "
          f"BENCH_BCRYPT_COST=4 gives it a cheap one)")
print("unpack: baseline = cat vol.* | tar -x, then skopeo copy oci: docker:// into a fresh docker-registry;")
print("        GB/s = layout bytes; baseline MiB = its largest process, docker-registry included "
      f"(docker-registry {int(meta.get('dr_unpack_hwm_kib', 0)) / 1024:.1f} MiB, "
      f"pipeline {int(meta.get('baseline_unpack_pipeline_kib', 0)) / 1024:.1f} MiB)")
if meta.get("baseline_unpack_phases"):
    x, c = meta["baseline_unpack_phases"].split()
    print(f"        baseline's last run: cat | tar -x {float(x):.2f} s, skopeo copy {float(c):.2f} s")
if skip:
    print("\ntargets: not checked (BENCH_SKIP_AIRLIFT=1)")
else:
    print("\ntargets: " + ("all met" if not failed else "MISSED:\n  " + "\n  ".join(failed)))
if out:
    with open(out, "w") as f:
        json.dump({"data_bytes": data, "blobs": blobs, "refs": refs, "pull_requests": reqs,
                   "pull_bytes": pbytes, "pull_jobs": jobs, "volume_size": vol, "cpus": cpus,
                   "runs": runs, "airlift_version": version, "docker_registry_version": drv,
                   "skopeo_version": skv, "bcrypt_cost": cost, "htpasswd_hasher": hasher,
                   "airlift_measured": not skip, "steps": rows, "meta": meta,
                   "targets_missed": failed}, f, indent=2)
        f.write("\n")
sys.exit(3 if failed else 0)
EOF
case $rc in
0) ;;
3) if [[ ${BENCH_STRICT:-0} == 1 ]]; then exit 1; fi ;;
*) die "writing the report failed" ;;
esac
