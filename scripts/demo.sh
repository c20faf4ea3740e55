#!/usr/bin/env bash
# The whole trip on the bundled test data: keygen, pack, verify at the "gate", unpack into
# a freshly installed registry on the "air-gapped" side, serve it, and pull an image from it
# with skopeo over TLS with the generated CA and credentials.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
# Where cargo put it: honours CARGO_TARGET_DIR and .cargo/config.toml's target.
target_dir=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
airlift=$target_dir/x86_64-unknown-linux-gnu/debug/airlift
work=$(mktemp -d -t airlift-demo.XXXXXX)
server=
cleanup() {
    if [[ -n $server ]]; then kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "== keygen"
"$airlift" keygen --out "$work/keys" --name demo
echo "== pack (8 MiB volumes, so the bundle spans several volumes)"
"$airlift" pack --key "$work/keys/demo.key" --out "$work/bundle" --name demo \
    --volume-size 8MiB --chunk-size 1MiB oci:testdata/layout
ls -l "$work/bundle"
echo "== verify at the gate (read-only)"
"$airlift" verify "$work/bundle" --key "$work/keys/demo.pub"
echo "== unpack on the air-gapped host, into a registry installed on first use"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$airlift" unpack "$work/bundle" --key "$work/keys/demo.pub" --root "$work/registry" \
    --hostname localhost --json > "$work/unpack.json"
password=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["registry"]["installed"]["password"])' "$work/unpack.json")
echo "== serve it"
"$airlift" serve --root "$work/registry" --addr "127.0.0.1:$port" 2> "$work/serve.log" &
server=$!
for _ in $(seq 200); do grep -qs listening "$work/serve.log" && break; sleep 0.05; done
grep -q listening "$work/serve.log" || { cat "$work/serve.log"; exit 1; }
mkdir -p "$work/certs" && cp "$work/registry/tls/ca.crt" "$work/certs/"
echo "== pull an image from it over TLS"
skopeo copy --quiet --all --src-cert-dir "$work/certs" --src-creds "init:$password" \
    "docker://localhost:$port/layout:multi" "oci:$work/pulled:multi"
skopeo inspect --cert-dir "$work/certs" --creds "init:$password" "docker://localhost:$port/layout:app-00" | head -4
echo "demo: OK"
