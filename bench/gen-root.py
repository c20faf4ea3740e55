#!/usr/bin/env python3
# Generate the content of a registry root's storage for the benchmarks (receipt.sh,
# day2.sh), in the layout of src/registry/storage.rs: blobs/sha256/<hex>, and per repository
# _links/<hex> (empty), _manifests/revisions/<hex> ({"mediaType","size"}),
# _manifests/tags/<tag>.
#
# usage: gen-root.py STORE BLOBS IMAGES REPOS [UNREFERENCED_PERCENT]
#
# BLOBS configs and layers are shared out among IMAGES manifests (each tagged once) over
# REPOS repositories. With UNREFERENCED_PERCENT, that share of the images is written as if
# deleted through the API afterwards: blobs, manifest and links stay, revision and tag
# are gone (what `airlift gc` collects). Every file is dated two days back, older than
# gc's default grace.
import hashlib, json, os, random, sys, time

store, blobs, images, repos = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
unreferenced = int(sys.argv[5]) if len(sys.argv) > 5 else 0
old = time.time() - 2 * 86400
rng = random.Random(13)
bdir = os.path.join(store, "blobs", "sha256")
os.makedirs(bdir, exist_ok=True)


def write(path, data=b""):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.utime(path, (old, old))


def put(data):
    hexd = hashlib.sha256(data).hexdigest()
    write(os.path.join(bdir, hexd), data)
    return hexd


pool = [(put(rng.randbytes(rng.randint(100, 2000))), 0) for _ in range(blobs)]
pool = [(h, os.path.getsize(os.path.join(bdir, h))) for h, _ in pool]
per = blobs // images
deleted = images * unreferenced // 100
for i in range(images):
    repo = f"ns{i % repos:03d}/app"
    mine = pool[i * per:(i + 1) * per] if i < images - 1 else pool[i * per:]
    config, layers = mine[0], mine[1:]
    desc = lambda mt, b: {"mediaType": mt, "digest": "sha256:" + b[0], "size": b[1]}
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", config),
        "layers": [desc("application/vnd.oci.image.layer.v1.tar+gzip", l) for l in layers],
    }).encode()
    m = put(manifest)
    rdir = os.path.join(store, "repositories", repo)
    for h, _ in mine:
        write(os.path.join(rdir, "_links", h))
    write(os.path.join(rdir, "_links", m))
    if i < deleted:
        continue
    rev = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(manifest)}
    write(os.path.join(rdir, "_manifests", "revisions", m), json.dumps(rev).encode())
    write(os.path.join(rdir, "_manifests", "tags", f"v{i // repos}"), f"sha256:{m}\n".encode())
