#!/usr/bin/env bash
# The whole trip on the bundled test data: keygen, pack, verify at the "gate", unpack on
# the "air-gapped" side, then pull an image out of the result with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
airlift=target/x86_64-unknown-linux-gnu/debug/airlift
work=$(mktemp -d -t airlift-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "== keygen"
"$airlift" keygen --out "$work/keys" --name demo
echo "== pack (volumes of 8 MiB, so the bundle spans several volumes)"
"$airlift" pack --key "$work/keys/demo.key" --out "$work/bundle" --name demo \
    --volume-size 8MiB --chunk-size 1MiB oci:testdata/layout
ls -l "$work/bundle"
echo "== verify at the gate (read-only)"
"$airlift" verify "$work/bundle" --key "$work/keys/demo.pub"
echo "== unpack on the air-gapped host"
"$airlift" unpack "$work/bundle" --key "$work/keys/demo.pub" --layout "$work/site"
echo "== pull an image from what was unpacked"
skopeo copy --quiet "oci:$work/site:multi" "dir:$work/pulled"
skopeo inspect "oci:$work/site:app-00" | head -3
echo "demo: OK"
