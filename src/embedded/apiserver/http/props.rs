//! Property tests of the protobuf body decoder (bytes from any client): it never panics on any
//! input, and what a Kubernetes protobuf encoder writes for a Secret or ConfigMap decodes to the
//! object's JSON.
use std::collections::BTreeMap;

use base64::Engine;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::protobuf::decode;

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A length-delimited field.
fn field(number: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint((number << 3) | 2, &mut out);
    varint(payload.len() as u64, &mut out);
    out.extend_from_slice(payload);
    out
}

fn entries(number: u64, map: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    map.iter()
        .flat_map(|(k, v)| field(number, &[field(1, k.as_bytes()), field(2, v)].concat()))
        .collect()
}

/// `k8s\0` + Unknown{typeMeta, raw}, as apimachinery's protobuf serializer writes it.
fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [field(1, b"v1"), field(2, kind.as_bytes())].concat();
    [b"k8s\x00".to_vec(), field(1, &type_meta), field(2, raw)].concat()
}

fn object_meta(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Vec<u8> {
    let labels: BTreeMap<String, Vec<u8>> = labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    [
        field(1, name.as_bytes()),
        field(3, namespace.as_bytes()),
        entries(11, &labels),
    ]
    .concat()
}

fn metadata_json(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut meta = json!({"name": name, "namespace": namespace});
    if !labels.is_empty() {
        meta["labels"] = json!(labels);
    }
    meta
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn protobuf_decoder_never_panics(body in prop::collection::vec(any::<u8>(), 0..200), enveloped in any::<bool>()) {
        let body = if enveloped { [b"k8s\x00".to_vec(), body].concat() } else { body };
        let _ = decode(&body);
    }

    #[test]
    fn protobuf_decoder_never_panics_on_damaged_secrets(
        data in prop::collection::btree_map("[a-z]{1,5}", prop::collection::vec(any::<u8>(), 0..8), 0..3),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<bool>(),
    ) {
        let raw = [field(1, &object_meta("s", "ns", &BTreeMap::new())), entries(2, &data)].concat();
        let mut body = envelope("Secret", &raw);
        let i = at.index(body.len());
        if cut { body.truncate(i) } else { body[i] = byte }
        let _ = decode(&body);
    }

    #[test]
    fn secrets_round_trip(
        name in "[a-z][a-z0-9-]{0,10}",
        namespace in "[a-z]{1,8}",
        labels in prop::collection::btree_map("[a-z]{1,5}", "[a-z0-9]{0,5}", 0..3),
        data in prop::collection::btree_map("[a-z.]{1,6}", prop::collection::vec(any::<u8>(), 0..16), 0..4),
        kind in "Opaque|kubernetes.io/basic-auth",
    ) {
        let raw = [field(1, &object_meta(&name, &namespace, &labels)), entries(2, &data), field(3, kind.as_bytes())].concat();
        let mut want = json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata_json(&name, &namespace, &labels), "type": kind});
        if !data.is_empty() {
            let encoded: BTreeMap<&String, String> =
                data.iter().map(|(k, v)| (k, base64::engine::general_purpose::STANDARD.encode(v))).collect();
            want["data"] = json!(encoded);
        }
        prop_assert_eq!(decode(&envelope("Secret", &raw)).expect("decodes"), want);
    }

    #[test]
    fn configmaps_round_trip(
        name in "[a-z][a-z0-9-]{0,10}",
        data in prop::collection::btree_map("[a-z.]{1,6}", "\\PC{0,12}", 0..4),
    ) {
        let bytes: BTreeMap<String, Vec<u8>> = data.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
        let raw = [field(1, &object_meta(&name, "default", &BTreeMap::new())), entries(2, &bytes)].concat();
        let mut want = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata_json(&name, "default", &BTreeMap::new())});
        if !data.is_empty() {
            want["data"] = json!(data);
        }
        prop_assert_eq!(decode(&envelope("ConfigMap", &raw)).expect("decodes"), want);
    }
}
