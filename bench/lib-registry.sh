# Shared by registry.sh and client.sh: ports, servers, readiness, auth checks, peak RSS,
# and docker-registry's htpasswd. Uses the calling script's globals (SERVERS, LOGS, BENCH_USER, …).

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server LOG CMD...: start CMD in the background (its own pid: bash execs it, and env
# execs airlift); sets SERVER_PID.
start_server() {
    local log=$1; shift
    "$@" >"$log" 2>&1 &
    SERVER_PID=$!
    SERVERS+=("$SERVER_PID")
}
stop_server() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# curl against a registry on loopback: https://localhost:PORT pinned to 127.0.0.1
rcurl() { # PORT CA ARGS...
    local port=$1 ca=$2; shift 2
    curl -sS --cacert "$ca" --resolve "localhost:$port:127.0.0.1" "$@"
}

# wait_ready NAME PID PORT CA LOG: poll GET /v2/ over TLS until the server answers 401
wait_ready() {
    local name=$1 pid=$2 port=$3 ca=$4 log=$5 code t_end
    t_end=$((SECONDS + 60))
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$log" >&2 || true
            fail "$name exited while starting (log above)"
        fi
        code=$(rcurl "$port" "$ca" -o /dev/null -w '%{http_code}' --max-time 5 \
            "https://localhost:$port/v2/" 2>"$LOGS/ready.err") || true
        case $code in
        401) return 0 ;;
        000 | "") ;;
        *) fail "$name: GET /v2/ without credentials answered $code (expected 401)" ;;
        esac
        if ((SECONDS > t_end)); then
            tail -n 20 "$log" "$LOGS/ready.err" >&2 || true
            fail "$name did not answer on 127.0.0.1:$port within 60 s"
        fi
        sleep 0.05
    done
}

# check_auth NAME PORT CA USER PASS: the credentials work, and nothing is served without them
check_auth() {
    local name=$1 port=$2 ca=$3 user=$4 pass=$5 code
    code=$(rcurl "$port" "$ca" -o /dev/null -w '%{http_code}' -u "$user:$pass" "https://localhost:$port/v2/") || true
    [[ $code == 200 ]] || fail "$name: GET /v2/ with the credentials answered $code (expected 200)"
}

hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
# reset the peak RSS to the current RSS (Linux >= 4.0); best effort
reset_hwm() { { echo 5 >"/proc/$1/clear_refs"; } 2>/dev/null || true; }


# make_htpasswd OUT: BENCH_USER's bcrypt entry at BCRYPT_COST, by the first hasher at hand
make_htpasswd() {
    local out=$1
    if command -v htpasswd >/dev/null; then
        htpasswd -B -C "$BCRYPT_COST" -b -c "$out" "$BENCH_USER" "$BENCH_PASS" 2>/dev/null &&
            HASHER="htpasswd -B" && return 0
    fi
    if python3 -c 'import bcrypt' 2>/dev/null; then
        python3 - "$BENCH_USER" "$BENCH_PASS" "$BCRYPT_COST" >"$out" <<'EOF' &&
import bcrypt, sys
u, p, c = sys.argv[1:]
print(f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(rounds=int(c))).decode()}")
EOF
            HASHER="python3 bcrypt" && return 0
    fi
    # glibc / libxcrypt crypt(3) does bcrypt ($2b$)
    if perl -e '
        my ($u, $p, $c) = @ARGV;
        my @a = ("." , "/", "A".."Z", "a".."z", "0".."9");
        my $salt = join "", map { $a[int rand 64] } 1 .. 21;
        $salt .= (".", "O", "e", "u")[int rand 4];
        my $set = sprintf q($2b$%02d$%s), $c, $salt;
        my $h = crypt($p, $set);
        exit 1 unless defined $h && $h =~ /^\$2b\$/ && crypt($p, $h) eq $h;
        print "$u:$h\n";' "$BENCH_USER" "$BENCH_PASS" "$BCRYPT_COST" >"$out" 2>/dev/null; then
        HASHER="perl crypt(3)" && return 0
    fi
    if [[ -n ${A_HTPASSWD:-} && -f $A_HTPASSWD ]] && grep -q "^$BENCH_USER:\\\$2" "$A_HTPASSWD"; then
        grep "^$BENCH_USER:" "$A_HTPASSWD" >"$out"
        HASHER="airlift install's htpasswd line" && return 0
    fi
    die "no bcrypt hasher for docker-registry's htpasswd: apt-get install apache2-utils"
}

# The docker-registry (CNCF distribution) both benchmarks run: TLS with $TLS/dr.crt and
# dr.key, htpasswd at $DR_HTPASSWD, logs in $LOGS; the caller sets those, $WORK,
# $DOCKER_REGISTRY, $DR_CA and the BENCH_USER/BENCH_PASS credentials.
# docker_registry_config FILE PORT STORAGE
docker_registry_config() {
    cat >"$1" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $3
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$2
  secret: $(python3 -c 'import secrets; print(secrets.token_hex(16))')
  headers:
    X-Content-Type-Options: [nosniff]
  tls:
    certificate: $TLS/dr.crt
    key: $TLS/dr.key
auth:
  htpasswd:
    realm: bench
    path: $DR_HTPASSWD
EOF
}
# start_docker_registry NAME STORAGE: sets D_PID, D_PORT
start_docker_registry() {
    local name=$1 storage=$2
    mkdir -p "$storage"
    D_PORT=$(free_port)
    docker_registry_config "$WORK/$name.yml" "$D_PORT" "$storage"
    start_server "$LOGS/$name.log" env -i PATH=/usr/bin:/bin "$DOCKER_REGISTRY" serve "$WORK/$name.yml"
    D_PID=$SERVER_PID
    wait_ready "$name" "$D_PID" "$D_PORT" "$DR_CA" "$LOGS/$name.log"
    check_auth "$name" "$D_PORT" "$DR_CA" "$BENCH_USER" "$BENCH_PASS"
}
