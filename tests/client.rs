//! Pack straight from a registry: Debian's docker-registry (CNCF distribution) with TLS
//! and htpasswd on loopback as the source.

use crate::common::distribution::Distribution;
use crate::common::testdata;

#[test]
fn the_distribution_harness_serves_pushed_images_over_tls_with_auth() {
    let Some(dist) = Distribution::start() else { return };
    let layout = testdata("layout");
    dist.push(&format!("oci:{}:multi", layout.display()), "ns/multi:1");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let want = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == "multi")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(dist.digest("ns/multi:1"), want);
}
