#!/usr/bin/env python3
"""Generate a deterministic OCI image layout for benchmarking airlift.

    gen-layout.py [--size 2G] [--images 12] [--seed 1] [--jobs N] [--force] DIR

The layout (oci-layout, index.json, blobs/sha256/...) holds about SIZE bytes of
blobs, laid out like a real mirror:

  * three big base layers shared by many images (base-os is in every amd64 image),
  * one app layer and one tiny layer per image,
  * OCI image configs (rootfs.diff_ids = sha256 of the uncompressed tar) and
    OCI image manifests,
  * a multi-arch image ("multi": an image index with linux/amd64 and linux/arm64/v8),
  * one manifest tagged under two names (app-00 and app-00-latest),
  * index.json entries named by org.opencontainers.image.ref.name.

Every layer is a real gzip (stored, level 0) of a real tar holding a directory and a
file of pseudo-random bytes (SHAKE-128 in counter mode), so it is incompressible yet
cheap to produce. Layers are streamed to disk in 1 MiB pieces; memory stays bounded
whatever SIZE is. The same arguments always give byte-identical output, whatever --jobs.

Python 3 standard library only.
"""

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tarfile
import zlib

PIECE = 1 << 20  # bytes of payload generated per step
MTIME = 1700000000  # fixed timestamps: output must not depend on the clock
CREATED = "2023-11-14T22:13:20Z"

MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_INDEX = "application/vnd.oci.image.index.v1+json"
REF_NAME = "org.opencontainers.image.ref.name"

# Rough per-layer overhead (tar headers and end blocks, gzip header and stored-block
# headers) subtracted so the layout lands close to the requested size.
TAR_OVERHEAD = 3 * 512 + 10240
GZIP_OVERHEAD_PER_BYTE = 5 / 16384  # zlib level 0 emits a 5-byte header per <=16 KiB block


def parse_size(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B?)\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 200M, 2G, 1.5G, 123456)")
    num, unit = float(m.group(1)), m.group(2).upper()
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit]
    return int(num * mult)


def payload_for(blob_size):
    """Payload length that makes a layer blob of about blob_size bytes."""
    p = int((blob_size - TAR_OVERHEAD - 18) / (1 + GZIP_OVERHEAD_PER_BYTE))
    return max(p, 1)


def write_layer(job):
    """Write one layer blob. Runs in a worker process; returns its descriptor data."""
    blobdir, seed, name, payload = job
    root = f"opt/{name}/"
    tar_head = b""
    for ti in (tarfile.TarInfo("opt/"), tarfile.TarInfo(root)):
        ti.type, ti.mode = tarfile.DIRTYPE, 0o755
        ti.mtime, ti.uname, ti.gname = MTIME, "root", "root"
        tar_head += ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    ti = tarfile.TarInfo(root + "payload.bin")
    ti.size, ti.mode, ti.mtime, ti.uname, ti.gname = payload, 0o644, MTIME, "root", "root"
    tar_head += ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    tar_len = len(tar_head) + payload
    pad = -payload % 512
    tail = pad + 1024  # file padding, then two zero blocks ending the archive
    tail += -(tar_len + tail) % tarfile.RECORDSIZE  # as tarfile/GNU tar pad the record
    tar_tail = bytes(tail)

    diff = hashlib.sha256()
    dig = hashlib.sha256()
    comp = zlib.compressobj(0, zlib.DEFLATED, 31)  # wbits 31: gzip wrapper, mtime 0
    size = 0
    tmp = os.path.join(blobdir, f".tmp-{name}")
    with open(tmp, "wb") as out:

        def emit(data):
            nonlocal size
            diff.update(data)
            z = comp.compress(data)
            if z:
                dig.update(z)
                out.write(z)
                size += len(z)

        emit(tar_head)
        key = f"airlift-bench/{seed}/{name}/".encode()
        left, n = payload, 0
        while left:
            k = min(left, PIECE)
            emit(hashlib.shake_128(key + n.to_bytes(8, "little")).digest(k))
            left -= k
            n += 1
        emit(tar_tail)
        z = comp.flush()
        dig.update(z)
        out.write(z)
        size += len(z)
    digest = dig.hexdigest()
    os.replace(tmp, os.path.join(blobdir, digest))
    return name, {
        "mediaType": MT_LAYER,
        "digest": "sha256:" + digest,
        "size": size,
    }, "sha256:" + diff.hexdigest()


def put_json(blobdir, obj, media_type):
    data = json.dumps(obj, indent=2, sort_keys=False).encode() + b"\n"
    digest = hashlib.sha256(data).hexdigest()
    path = os.path.join(blobdir, digest)
    if not os.path.exists(path):
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
    return {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}


def plan(size, images):
    """Return (layers {name: payload}, image specs) for a layout of about `size` bytes."""
    layers = {}
    base = {"base-os": 0.30, "base-runtime": 0.15, "base-tools": 0.08}
    for name, frac in base.items():
        layers[name] = frac
    # The rest is spread over per-image app layers (weights 1..5) and the multi-arch image.
    app_w = {f"app-{i:02d}": 1 + (i * 7) % 5 for i in range(images)}
    app_w.update({"multi-amd64": 3, "multi-arm64-base": 6, "multi-arm64": 3})
    rest = 1.0 - sum(base.values())
    total_w = sum(app_w.values())
    for name, w in app_w.items():
        layers[name] = rest * w / total_w
    layers = {n: payload_for(int(size * f)) for n, f in layers.items()}
    # Tiny per-image layers (a few KiB, like /etc tweaks); not counted in the budget.
    for i in range(images):
        layers[f"app-{i:02d}-etc"] = 4096 * (1 + i % 8) + 123 * i

    specs = []
    for i in range(images):
        stack = ["base-os"]
        if i % 3 >= 1:
            stack.append("base-runtime")
        if i % 3 == 2:
            stack.append("base-tools")
        stack += [f"app-{i:02d}", f"app-{i:02d}-etc"]
        refs = [f"app-{i:02d}"] + (["app-00-latest"] if i == 0 else [])
        specs.append((refs, {"amd64": stack}))
    specs.append((["multi"], {
        "amd64": ["base-os", "multi-amd64"],
        "arm64": ["multi-arm64-base", "multi-arm64"],
    }))
    return layers, specs


def image_manifest(blobdir, ref, arch, stack, descs):
    config = {
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/",
            "Labels": {"bench.airlift.image": ref},
        },
        "rootfs": {"type": "layers", "diff_ids": [descs[n][1] for n in stack]},
        "history": [
            {"created": CREATED, "created_by": f"ADD {n}.tar.gz /"} for n in stack
        ],
    }
    if arch == "arm64":
        config["variant"] = "v8"
    cdesc = put_json(blobdir, config, MT_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": cdesc,
        "layers": [descs[n][0] for n in stack],
        "annotations": {"org.opencontainers.image.created": CREATED},
    }
    return put_json(blobdir, manifest, MT_MANIFEST)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", help="output directory (must be absent or empty)")
    ap.add_argument("--size", type=parse_size, default=parse_size("2G"),
                    help="total size of the blobs, bytes or K/M/G/T (powers of 1024); default 2G")
    ap.add_argument("--images", type=int, default=12, help="number of single-arch images (default 12)")
    ap.add_argument("--seed", default="1", help="seed for the pseudo-random layer contents")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="layers generated in parallel (default: CPU count)")
    ap.add_argument("--force", action="store_true", help="remove DIR first if it is not empty")
    args = ap.parse_args()
    if args.images < 1:
        ap.error("--images must be at least 1")

    if os.path.exists(args.dir) and os.listdir(args.dir):
        if not args.force:
            ap.error(f"{args.dir} exists and is not empty (use --force to replace it)")
        shutil.rmtree(args.dir)
    blobdir = os.path.join(args.dir, "blobs", "sha256")
    os.makedirs(blobdir, exist_ok=True)

    layers, specs = plan(args.size, args.images)
    # Biggest first, so the parallel workers finish together.
    jobs = [(blobdir, args.seed, n, p) for n, p in sorted(layers.items(), key=lambda x: (-x[1], x[0]))]
    if args.jobs > 1:
        with multiprocessing.Pool(args.jobs) as pool:
            results = pool.map(write_layer, jobs, chunksize=1)
    else:
        results = [write_layer(j) for j in jobs]
    descs = {name: (desc, diff_id) for name, desc, diff_id in results}

    entries = []
    for refs, arches in specs:
        if len(arches) == 1:
            (arch, stack), = arches.items()
            desc = image_manifest(blobdir, refs[0], arch, stack, descs)
        else:
            manifests = []
            for arch, stack in arches.items():
                d = image_manifest(blobdir, refs[0], arch, stack, descs)
                d["platform"] = {"architecture": arch, "os": "linux"}
                if arch == "arm64":
                    d["platform"]["variant"] = "v8"
                manifests.append(d)
            desc = put_json(blobdir, {"schemaVersion": 2, "mediaType": MT_INDEX,
                                      "manifests": manifests}, MT_INDEX)
        for ref in refs:
            entries.append(dict(desc, annotations={REF_NAME: ref}))

    with open(os.path.join(args.dir, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(args.dir, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}, f, indent=2)
        f.write("\n")

    names = os.listdir(blobdir)
    total = sum(os.path.getsize(os.path.join(blobdir, n)) for n in names)
    print(f"{args.dir}: {len(names)} blobs, {total} bytes, {len(entries)} refs", file=sys.stderr)


if __name__ == "__main__":
    main()
