#!/usr/bin/env python3
"""Make cosign-shaped test vectors for airlift's sigstore verifier (src/sigstore/).

Real `cosign` is not installable on the build machine (no Debian package, no Go module
proxy), so this script writes what `cosign sign --key` writes, using python's
`cryptography` (ECDSA P-256, SHA-256, DER signatures):

- a simple-signing payload (`application/vnd.dev.cosign.simplesigning.v1+json`) naming the
  subject digest and docker reference;
- an OCI image manifest whose one layer is that payload, the base64 DER signature in the
  layer annotation `dev.cosignproject.cosign/signature`;
- optionally a Rekor bundle in `dev.sigstore.cosign/bundle`: a hashedrekord entry body and
  a SignedEntryTimestamp, the Rekor key's ECDSA signature over the RFC 8785 canonical JSON
  of {body, integratedTime, logID, logIndex}; logID is the SHA-256 of the Rekor key's DER
  SubjectPublicKeyInfo.

ECDSA signatures are randomized: every run writes new signature bytes. Tests only depend on
what verifies, never on exact bytes. ALL KEYS HERE ARE TEST KEYS, of no value, never secrets.

Usage:
  make-vectors.py keygen PREFIX                 PREFIX.key (PKCS#8 PEM) + PREFIX.pub
  make-vectors.py sign KEY SUBJECT REFERENCE OUTDIR [--rekor REKOR_KEY]
        OUTDIR/manifest.json and OUTDIR/blobs/sha256/HEX (config, payload); prints the
        manifest's digest. SUBJECT is sha256:HEX of the signed image's manifest.
  make-vectors.py vectors [DIR]                 regenerate every vector (default: this dir)
  make-vectors.py import SIGNATURE OUTDIR       wrap a real-cosign signature stored by
        containers/image ("sigstore-json" file: payload + annotations) as a manifest + blobs
"""
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

SIG_ANNOTATION = "dev.cosignproject.cosign/signature"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
PAYLOAD_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
# A fixed subject, the digest of the (imaginary) image the vectors sign.
SUBJECT = "sha256:" + hashlib.sha256(b"airlift sigstore test image").hexdigest()
REFERENCE = "registry.example.com/test/image"
INTEGRATED_TIME = 1764806400  # 2025-12-04T00:00:00Z
LOG_INDEX = 4242


def keygen(prefix):
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    write(prefix + ".key", pem)
    write(prefix + ".pub", public_pem(key))


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def load_key(path):
    with open(path, "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def ecdsa(key, data):
    return key.sign(data, ec.ECDSA(hashes.SHA256()))


def payload_bytes(subject, reference):
    doc = {"critical": {"identity": {"docker-reference": reference},
                        "image": {"docker-manifest-digest": subject},
                        "type": "cosign container image signature"},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def rekor_bundle(rekor_key, signer, payload, signature, recorded_key=None):
    """`recorded_key`: the public key the entry records, if not `signer`'s (tampering)."""
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {"data": {"hash": {"algorithm": "sha256",
                                       "value": hashlib.sha256(payload).hexdigest()}},
                     "signature": {"content": b64(signature),
                                   "publicKey": {"content": b64(public_pem(recorded_key or signer))}}}}
    spki = rekor_key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    entry = {"body": b64(json.dumps(body, separators=(",", ":")).encode()),
             "integratedTime": INTEGRATED_TIME, "logID": hashlib.sha256(spki).hexdigest(),
             "logIndex": LOG_INDEX}
    # RFC 8785 for these values: keys sorted, no spaces (strings are plain ASCII).
    canonical = json.dumps(entry, sort_keys=True, separators=(",", ":")).encode()
    return {"SignedEntryTimestamp": b64(ecdsa(rekor_key, canonical)), "Payload": entry}


def sign(key_path, subject, reference, outdir, rekor_path=None, payload=None, signature=None,
         recorded_key=None):
    """Write a signature image; `payload`/`signature`/`recorded_key` tamper with it."""
    key = load_key(key_path)
    signed = payload_bytes(subject, reference)
    signature = signature if signature is not None else ecdsa(key, signed)
    payload = payload if payload is not None else signed
    annotations = {SIG_ANNOTATION: b64(signature)}
    if rekor_path:
        bundle = rekor_bundle(load_key(rekor_path), key, payload, signature, recorded_key)
        annotations[BUNDLE_ANNOTATION] = json.dumps(bundle, separators=(",", ":"))
    config = json.dumps({"architecture": "", "config": {}, "created": "0001-01-01T00:00:00Z",
                         "os": "", "rootfs": {"type": "layers", "diff_ids": [digest(payload)]}},
                        separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [dict(descriptor(PAYLOAD_TYPE, payload), annotations=annotations)]}
    for blob in (config, payload):
        write(os.path.join(outdir, "blobs", "sha256", digest(blob)[7:]), blob)
    manifest_bytes = json.dumps(manifest, indent=2).encode()
    write(os.path.join(outdir, "manifest.json"), manifest_bytes)
    return digest(manifest_bytes), payload


def import_sigstore_json(path, outdir):
    """containers/image stores a cosign signature layer as `\0sigstore-json\n` + JSON
    {mimeType, payload (base64), annotations}: rebuild the signature image around it."""
    with open(path, "rb") as f:
        data = f.read()
    doc = json.loads(data[data.index(b"\n") + 1:])
    payload = base64.b64decode(doc["payload"])
    config = b"{}"
    layer = dict(descriptor(doc["mimeType"], payload), annotations=doc["annotations"])
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                "layers": [layer]}
    for blob in (config, payload):
        write(os.path.join(outdir, "blobs", "sha256", digest(blob)[7:]), blob)
    write(os.path.join(outdir, "manifest.json"), json.dumps(manifest, indent=2).encode())


def vectors(d):
    """Every vector the unit tests read (src/sigstore/tests.rs)."""
    for name in ("test-key", "other-key", "rekor-key"):
        keygen(os.path.join(d, name))
    key, rekor = os.path.join(d, "test-key.key"), os.path.join(d, "rekor-key.key")
    sign(key, SUBJECT, REFERENCE, os.path.join(d, "good"))
    sign(key, SUBJECT, REFERENCE, os.path.join(d, "good-rekor"), rekor_path=rekor)
    # The payload names another image, the signature is the one over the original payload.
    other = payload_bytes(SUBJECT, REFERENCE + "-evil")
    sign(key, SUBJECT, REFERENCE, os.path.join(d, "tampered-payload"), payload=other,
         signature=ecdsa(load_key(key), payload_bytes(SUBJECT, REFERENCE)))
    # One bit of the DER signature flipped.
    sig = bytearray(ecdsa(load_key(key), payload_bytes(SUBJECT, REFERENCE)))
    sig[-1] ^= 1
    sign(key, SUBJECT, REFERENCE, os.path.join(d, "tampered-signature"), signature=bytes(sig))
    # The payload blob stored under the descriptor's digest is not the payload it names.
    out = os.path.join(d, "digest-mismatch")
    _, payload = sign(key, SUBJECT, REFERENCE, out)
    write(os.path.join(out, "blobs", "sha256", digest(payload)[7:]), payload + b" ")
    # A Rekor bundle whose entry was changed after the log signed it (integratedTime).
    out = os.path.join(d, "bad-rekor")
    sign(key, SUBJECT, REFERENCE, out, rekor_path=rekor)
    with open(os.path.join(out, "manifest.json")) as f:
        manifest = json.load(f)
    annotations = manifest["layers"][0]["annotations"]
    bundle = json.loads(annotations[BUNDLE_ANNOTATION])
    bundle["Payload"]["integratedTime"] += 1
    annotations[BUNDLE_ANNOTATION] = json.dumps(bundle, separators=(",", ":"))
    write(os.path.join(out, "manifest.json"), json.dumps(manifest, indent=2).encode())
    # A Rekor entry, properly logged, that records another public key than the signer's.
    sign(key, SUBJECT, REFERENCE, os.path.join(d, "rekor-other-key"), rekor_path=rekor,
         recorded_key=load_key(os.path.join(d, "other-key.key")))
    write(os.path.join(d, "subject.txt"), (SUBJECT + "\n").encode())


def descriptor(media_type, blob):
    return {"mediaType": media_type, "size": len(blob), "digest": digest(blob)}


def digest(blob):
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def b64(data):
    return base64.b64encode(data).decode()


def write(path, data):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main(argv):
    if len(argv) == 3 and argv[1] == "keygen":
        keygen(argv[2])
    elif len(argv) in (6, 8) and argv[1] == "sign":
        rekor = argv[7] if len(argv) == 8 and argv[6] == "--rekor" else None
        if len(argv) == 8 and rekor is None:
            sys.exit(__doc__)
        print(sign(argv[2], argv[3], argv[4], argv[5], rekor_path=rekor)[0])
    elif len(argv) == 4 and argv[1] == "import":
        import_sigstore_json(argv[2], argv[3])
    elif len(argv) in (2, 3) and argv[1] == "vectors":
        vectors(argv[2] if len(argv) == 3 else os.path.dirname(os.path.abspath(__file__)))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
