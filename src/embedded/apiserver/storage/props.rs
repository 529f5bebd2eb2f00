//! Property tests of the storage layer's parsers of untrusted text: label and field selectors
//! (query strings) and managed fields (`metadata.managedFields`, which a client may send). They
//! never panic; a selector rendered from requirements parses back to the same verdicts; a
//! server-side apply repeated by its manager changes nothing.
use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::fields;
use super::selector::{FieldSelector, LabelSelector};
use crate::embedded::apiserver::resources::{ResourceType, builtins};

/// One label requirement, as a test knows it.
#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Req {
    fn text(&self) -> String {
        match self {
            Req::Eq(k, v) => format!("{k}={v}"),
            Req::NotEq(k, v) => format!("{k} != {v}"),
            Req::In(k, vs) => format!("{k} in ({})", vs.join(", ")),
            Req::NotIn(k, vs) => format!("{k} notin ({})", vs.join(",")),
            Req::Exists(k) => k.clone(),
            Req::DoesNotExist(k) => format!("!{k}"),
        }
    }

    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|x| !vs.contains(x)),
            Req::Exists(k) => labels.contains_key(k),
            Req::DoesNotExist(k) => !labels.contains_key(k),
        }
    }
}

fn label_key() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["app", "tier", "example.com/role", "k8s.io/x", "a-b.c"]).prop_map(String::from)
}

fn label_value() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "web", "v1.2", "x_y", "z-9"]).prop_map(String::from)
}

fn requirement() -> impl Strategy<Value = Req> {
    let values = || prop::collection::vec(label_value(), 1..4);
    prop_oneof![
        (label_key(), label_value()).prop_map(|(k, v)| Req::Eq(k, v)),
        (label_key(), label_value()).prop_map(|(k, v)| Req::NotEq(k, v)),
        (label_key(), values()).prop_map(|(k, vs)| Req::In(k, vs)),
        (label_key(), values()).prop_map(|(k, vs)| Req::NotIn(k, vs)),
        label_key().prop_map(Req::Exists),
        label_key().prop_map(Req::DoesNotExist),
    ]
}

fn pods() -> ResourceType {
    builtins().into_iter().find(|t| t.plural == "pods").expect("pods")
}

/// fieldsV1-like trees: the key forms the server reads, and garbage.
fn fields_v1() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "f:metadata",
        "f:labels",
        "f:spec",
        "f:containers",
        "f:image",
        "k:{\"name\":\"c\"}",
        "k:{bad",
        "v:1",
        "v:\"x\"",
        ".",
        "i:0",
        "",
        "f:",
    ]);
    let leaf = prop_oneof![Just(json!({})), Just(json!(null)), Just(json!(1)), Just(json!("x"))];
    leaf.prop_recursive(4, 32, 4, move |inner| {
        prop::collection::btree_map(key.clone(), inner, 0..4)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    })
}

fn pod(image: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": labels},
        "spec": {"containers": [{"name": "c", "image": image}]}})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn label_selectors_never_panic(text in "[a-z!=(), ]{0,30}|\\PC{0,30}") {
        let _ = LabelSelector::parse(&text);
    }

    #[test]
    fn label_selectors_round_trip(
        reqs in prop::collection::vec(requirement(), 1..5),
        labels in prop::collection::btree_map(label_key(), label_value(), 0..4),
    ) {
        let text: Vec<String> = reqs.iter().map(Req::text).collect();
        let selector = LabelSelector::parse(&text.join(",")).expect("a rendered selector parses");
        prop_assert_eq!(selector.matches(&labels), reqs.iter().all(|r| r.holds(&labels)));
    }

    #[test]
    fn field_selectors_never_panic(text in "[a-z.!=, ]{0,30}|\\PC{0,30}") {
        let _ = FieldSelector::parse(&text, &|f| f == "metadata.name");
    }

    #[test]
    fn field_selectors_round_trip(
        reqs in prop::collection::vec((prop::sample::select(vec!["metadata.name", "spec.nodeName"]), any::<bool>(), "[a-z0-9.-]{0,8}"), 1..4),
        name in "[a-z0-9.-]{0,8}",
        node in "[a-z0-9.-]{0,8}",
    ) {
        let text: Vec<String> = reqs.iter().map(|(f, eq, v)| format!("{f}{}{v}", if *eq { "==" } else { "!=" })).collect();
        let selector = FieldSelector::parse(&text.join(","), &|_| true).expect("a rendered selector parses");
        let field = |f: &str| if f == "metadata.name" { name.clone() } else { node.clone() };
        let want = reqs.iter().all(|(f, eq, v)| (field(f) == *v) == *eq);
        prop_assert_eq!(selector.matches(&field), want);
    }

    #[test]
    fn managed_fields_from_clients_never_panic(tree in fields_v1(), force in any::<bool>()) {
        let rt = pods();
        let mut live = pod("x", &BTreeMap::new());
        live["metadata"]["managedFields"] = json!([{"manager": "other", "operation": "Apply", "fieldsV1": tree}]);
        let _ = fields::apply(&rt, Some(&live), &pod("y", &BTreeMap::new()), "me", force, None);
        let mut updated = pod("z", &BTreeMap::new());
        updated["metadata"]["managedFields"] = live["metadata"]["managedFields"].clone();
        fields::track_update(&rt, &mut updated, Some(&live), "me", None);
    }

    #[test]
    fn server_side_apply_repeated_changes_nothing(
        image in "[a-z]{1,8}",
        labels in prop::collection::btree_map(label_key(), label_value(), 0..4),
    ) {
        let rt = pods();
        let applied = pod(&image, &labels);
        let once = fields::apply(&rt, None, &applied, "me", false, None).expect("first apply");
        let twice = fields::apply(&rt, Some(&once), &applied, "me", false, None).expect("second apply");
        let strip = |mut v: Value| {
            for entry in v["metadata"]["managedFields"].as_array_mut().into_iter().flatten() {
                entry.as_object_mut().map(|m| m.remove("time"));
            }
            v
        };
        prop_assert_eq!(strip(once), strip(twice));
    }
}
