#!/usr/bin/env python3
"""Write a file-based operator catalog shaped like redhat-operator-index into DIR.

Deterministic (same arguments, same bytes). One directory per package holding a
catalog.json of concatenated JSON objects, as opm writes it: olm.package, olm.channel
(a `stable` channel over every version, and one `stable-MAJOR.MINOR` per minor, with
replaces chains, skips and skipRange), olm.bundle (olm.package, olm.gvk, some
olm.package.required and olm.gvk.required, olm.csv.metadata, and olm.bundle.object
properties holding base64 manifests, which make most of a real catalog's bytes; related
images by digest), and olm.deprecations for some packages.

Defaults: 220 packages, 21,000 bundles, about 190 MB.
usage: gen-catalog.py [--packages N] [--bundles N] [--object-size BYTES] [--seed N] DIR
"""

import argparse
import base64
import hashlib
import json
import os
import random
import sys


def digest_ref(repo, *parts):
    h = hashlib.sha256("/".join(parts).encode()).hexdigest()
    return f"registry.example.com/{repo}@sha256:{h}"


def versions_for(rng, count):
    """`count` increasing versions: minors of a few patches, some with a -N release suffix."""
    out, major, minor, patch = [], 1, 0, 0
    while len(out) < count:
        suffix = f"-{rng.randint(1, 9)}" if rng.random() < 0.15 else ""
        out.append(f"{major}.{minor}.{patch}{suffix}")
        if rng.random() < 0.3:
            minor, patch = minor + 1, 0
            if rng.random() < 0.1:
                major, minor = major + 1, 0
        else:
            patch += 1
    return out


def chain(entries_src):
    """Channel entries over bundles in version order: each replaces the previous; every
    fourth also skips the one before that; each has a skipRange up to itself."""
    entries = []
    for i, (name, version) in enumerate(entries_src):
        e = {"name": name}
        if i > 0:
            e["replaces"] = entries_src[i - 1][0]
        if i > 1 and i % 4 == 0:
            e["skips"] = [entries_src[i - 2][0]]
            e["replaces"] = entries_src[i - 1][0]
        base = version.split("-")[0]
        e["skipRange"] = f">=0.0.1 <{base}"
        entries.append(e)
    return entries


def bundle(rng, pkg, name, version, gvks, deps, object_size):
    group = f"{pkg}.example.com"
    props = [{"type": "olm.package", "value": {"packageName": pkg, "version": version}}]
    props += [{"type": "olm.gvk", "value": {"group": group, "kind": k, "version": "v1"}} for k in gvks]
    props += deps
    props.append({"type": "olm.csv.metadata", "value": {
        "annotations": {"alm-examples": json.dumps([{"apiVersion": f"{group}/v1", "kind": k, "spec": {}} for k in gvks]),
                        "capabilities": "Full Lifecycle", "containerImage": digest_ref(f"{pkg}/operator", name)},
        "description": f"{pkg} manages things. " * 20,
        "displayName": pkg.replace("-", " ").title(),
        "installModes": [{"supported": True, "type": t} for t in ("OwnNamespace", "SingleNamespace", "AllNamespaces")],
        "keywords": [pkg, "operator"], "provider": {"name": "Example"},
    }})
    # Two manifests (CSV, CRD) as base64, about object_size bytes together.
    for part in (0.7, 0.3):
        raw = rng.randbytes(int(object_size * part * 3 / 4))
        props.append({"type": "olm.bundle.object", "value": {"data": base64.b64encode(raw).decode()}})
    related = [{"name": "operator", "image": digest_ref(f"{pkg}/operator", name)},
               {"name": "", "image": digest_ref(f"{pkg}/bundle", name)}]
    related += [{"name": f"operand-{i}", "image": digest_ref(f"{pkg}/operand-{i}", name)} for i in range(rng.randint(0, 4))]
    return {"schema": "olm.bundle", "name": name, "package": pkg, "image": digest_ref(f"{pkg}/bundle", name),
            "properties": props, "relatedImages": related}


def package(rng, index, names, count, object_size):
    pkg = names[index]
    versions = versions_for(rng, count)
    bundles = [(f"{pkg}.v{v}", v) for v in versions]
    minors = {}
    for name, v in bundles:
        minors.setdefault(".".join(v.split(".")[:2]), []).append((name, v))
    channels = [{"schema": "olm.channel", "package": pkg, "name": "stable", "entries": chain(bundles)}]
    channels += [{"schema": "olm.channel", "package": pkg, "name": f"stable-{m}", "entries": chain(b)}
                 for m, b in sorted(minors.items())]
    objects = [{"schema": "olm.package", "name": pkg, "defaultChannel": "stable",
                "description": f"The {pkg} operator.\n" * 10,
                "icon": {"base64data": base64.b64encode(rng.randbytes(3000)).decode(), "mediatype": "image/png"}}]
    objects += channels
    gvks = [f"Kind{k}" for k in range(rng.randint(1, 4))]
    for name, v in bundles:
        deps = []
        if index > 0 and rng.random() < 0.1:
            other = names[rng.randrange(index)]
            deps.append({"type": "olm.package.required", "value": {"packageName": other, "versionRange": ">=1.0.0 <3.0.0"}})
        if index > 0 and rng.random() < 0.1:
            other = names[rng.randrange(index)]
            deps.append({"type": "olm.gvk.required", "value": {"group": f"{other}.example.com", "kind": "Kind0", "version": "v1"}})
        objects.append(bundle(rng, pkg, name, v, gvks, deps, object_size))
    if rng.random() < 0.3:
        objects.append({"schema": "olm.deprecations", "package": pkg, "entries": [
            {"reference": {"schema": "olm.bundle", "name": bundles[0][0]}, "message": "old"},
            {"reference": {"schema": "olm.channel", "name": channels[1]["name"]}, "message": "old channel"}]})
    return pkg, objects


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packages", type=int, default=220)
    ap.add_argument("--bundles", type=int, default=21000)
    ap.add_argument("--object-size", type=int, default=4600, help="base64 manifest bytes per bundle")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("dir")
    a = ap.parse_args()
    if a.packages < 1 or a.bundles < a.packages:
        sys.exit("gen-catalog: need at least one package and one bundle per package")
    rng = random.Random(a.seed)
    names = [f"operator-{i:03d}" for i in range(a.packages)]
    # Bundle counts per package: uneven (log-normal: a few big packages, many small), summing to --bundles.
    weights = [rng.lognormvariate(0, 0.8) for _ in names]
    counts = [max(1, int(a.bundles * w / sum(weights))) for w in weights]
    counts[0] += a.bundles - sum(counts)
    if counts[0] < 1:
        sys.exit("gen-catalog: too few bundles for the packages")
    total = 0
    for i in range(a.packages):
        pkg, objects = package(rng, i, names, counts[i], a.object_size)
        os.makedirs(os.path.join(a.dir, pkg), exist_ok=True)
        path = os.path.join(a.dir, pkg, "catalog.json")
        with open(path, "w") as f:
            for o in objects:
                json.dump(o, f, indent=4)
                f.write("\n")
        total += os.path.getsize(path)
    print(f"gen-catalog: {a.packages} packages, {sum(counts)} bundles, {total} bytes in {a.dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
