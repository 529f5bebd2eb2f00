//! The resource types the server knows: the built-in ones and those CustomResourceDefinitions add.
use std::sync::Arc;

use serde_json::Value;

/// Where objects of a resource are stored. Several served resources may share one storage
/// (core/v1 and events.k8s.io/v1 Events, the versions of a CRD).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct StorageKey {
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource name.
    pub resource: String,
}

/// How an object looks through a served version: as stored, or converted (Events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// The stored form, with `apiVersion` set to the served version.
    Plain,
    /// events.k8s.io/v1 over core/v1 storage.
    EventsV1,
}

/// The CRD-specific parts of a custom resource's served version.
#[derive(Debug, Clone)]
pub(crate) struct CustomVersion {
    /// The version's `openAPIV3Schema` (`null` if none).
    pub schema: Value,
    /// `additionalPrinterColumns` (defaulted to an Age column when empty).
    pub printer_columns: Vec<Value>,
    /// `selectableFields[].jsonPath`, e.g. `.spec.color`.
    pub selectable_fields: Vec<String>,
    /// `subresources.scale`, when the version declares one.
    pub scale: Option<ScalePaths>,
}

/// A CRD's `subresources.scale`: where the replica counts and the selector live (`.spec.replicas`).
#[derive(Debug, Clone)]
pub(crate) struct ScalePaths {
    /// `specReplicasPath`.
    pub spec_replicas: String,
    /// `statusReplicasPath`.
    pub status_replicas: String,
    /// `labelSelectorPath`, if any.
    pub label_selector: Option<String>,
}

/// A served resource: group, version, names, scope and subresources.
#[derive(Debug, Clone)]
pub(crate) struct ResourceType {
    /// API group.
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural name (the URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Kind.
    pub kind: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names (`pl`).
    pub short_names: Vec<String>,
    /// Categories (`all`, `cdkube`).
    pub categories: Vec<String>,
    /// Has a `/status` subresource.
    pub status_subresource: bool,
    /// Has a `/log` subresource (pods).
    pub log_subresource: bool,
    /// PUT on a missing object creates it.
    pub create_on_update: bool,
    /// PUT without `metadata.resourceVersion` is allowed.
    pub unconditional_update: bool,
    /// Only `create` is served and nothing is stored (reviews such as SelfSubjectAccessReview).
    pub create_only: bool,
    /// Storage shared with other views.
    pub storage: StorageKey,
    /// Representation through this version.
    pub view: View,
    /// Set for custom resources.
    pub custom: Option<Arc<CustomVersion>>,
}

impl ResourceType {
    /// `group/version` or `version` for core.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The storage key of this type.
    pub(crate) fn key(&self) -> &StorageKey {
        &self.storage
    }

    /// Whether writes track `metadata.generation`.
    pub(crate) fn tracks_generation(&self) -> bool {
        self.custom.is_some()
            || self.plural == "customresourcedefinitions"
            || (self.group.is_empty() && self.plural == "pods")
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
}

const BUILTINS: &[Builtin] = &[
    Builtin {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
        short: &["ns"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        namespaced: true,
        short: &["po"],
        categories: &["all"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
        short: &["cm"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
        short: &["sa"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        categories: &[],
    },
    Builtin {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short: &["ev"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        namespaced: false,
        short: &["no"],
        categories: &[],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
        short: &["svc"],
        categories: &["all"],
    },
    Builtin {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
        short: &["ep"],
        categories: &[],
    },
    Builtin {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "apiregistration.k8s.io",
        version: "v1",
        plural: "apiservices",
        singular: "apiservice",
        kind: "APIService",
        namespaced: false,
        short: &[],
        categories: &["api-extensions"],
    },
    Builtin {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
        short: &["crd", "crds"],
        categories: &["api-extensions"],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "roles",
        singular: "role",
        kind: "Role",
        namespaced: true,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "rolebindings",
        singular: "rolebinding",
        kind: "RoleBinding",
        namespaced: true,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterroles",
        singular: "clusterrole",
        kind: "ClusterRole",
        namespaced: false,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        kind: "ClusterRoleBinding",
        namespaced: false,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        kind: "SelfSubjectAccessReview",
        namespaced: false,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        kind: "SelfSubjectRulesReview",
        namespaced: false,
        short: &[],
        categories: &[],
    },
    Builtin {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        kind: "SelfSubjectReview",
        namespaced: false,
        short: &[],
        categories: &[],
    },
];

/// The built-in resource types.
pub(crate) fn builtins() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .map(|b| {
            let events = b.plural == "events";
            ResourceType {
                group: b.group.to_string(),
                version: b.version.to_string(),
                plural: b.plural.to_string(),
                singular: b.singular.to_string(),
                kind: b.kind.to_string(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: b.categories.iter().map(|s| s.to_string()).collect(),
                status_subresource: matches!(
                    b.plural,
                    "pods" | "namespaces" | "customresourcedefinitions" | "nodes" | "services" | "apiservices"
                ),
                log_subresource: b.plural == "pods",
                // As the Event, Lease and RBAC strategies: PUT on a missing object creates it.
                create_on_update: events
                    || matches!(b.plural, "leases" | "endpoints")
                    || b.group == "rbac.authorization.k8s.io",
                unconditional_update: !matches!(b.plural, "customresourcedefinitions" | "leases"),
                create_only: b.plural.starts_with("selfsubject"),
                storage: StorageKey {
                    group: if events { String::new() } else { b.group.to_string() },
                    resource: b.plural.to_string(),
                },
                view: if events && !b.group.is_empty() {
                    View::EventsV1
                } else {
                    View::Plain
                },
                custom: None,
            }
        })
        .collect()
}

fn scale_paths(scale: &Value) -> Option<ScalePaths> {
    Some(ScalePaths {
        spec_replicas: scale["specReplicasPath"].as_str()?.to_string(),
        status_replicas: scale["statusReplicasPath"].as_str()?.to_string(),
        label_selector: scale["labelSelectorPath"].as_str().map(str::to_string),
    })
}

/// The served versions a CRD object defines (empty when it is malformed or being deleted).
pub(crate) fn from_crd(crd: &Value) -> Vec<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let (Some(group), Some(plural), Some(kind)) =
        (spec["group"].as_str(), names["plural"].as_str(), names["kind"].as_str())
    else {
        return Vec::new();
    };
    let singular = names["singular"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| kind.to_lowercase());
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let namespaced = spec["scope"].as_str() != Some("Cluster");
    let mut out = Vec::new();
    for version in spec["versions"].as_array().into_iter().flatten() {
        if version["served"] != Value::Bool(true) {
            continue;
        }
        let Some(name) = version["name"].as_str() else { continue };
        let status = version["subresources"]["status"].is_object();
        let mut columns = version["additionalPrinterColumns"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if columns.is_empty() {
            columns.push(serde_json::json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}));
        }
        let selectable = version["selectableFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["jsonPath"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        out.push(ResourceType {
            group: group.to_string(),
            version: name.to_string(),
            plural: plural.to_string(),
            singular: singular.clone(),
            kind: kind.to_string(),
            namespaced,
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: status,
            log_subresource: false,
            create_on_update: false,
            unconditional_update: false,
            create_only: false,
            storage: StorageKey {
                group: group.to_string(),
                resource: plural.to_string(),
            },
            view: View::Plain,
            custom: Some(Arc::new(CustomVersion {
                schema: version["schema"]["openAPIV3Schema"].clone(),
                printer_columns: columns,
                selectable_fields: selectable,
                scale: scale_paths(&version["subresources"]["scale"]),
            })),
        });
    }
    out
}
