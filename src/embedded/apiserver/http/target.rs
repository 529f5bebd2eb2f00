//! What a resource request is about: the type, namespace, name and subresource parsed from the
//! path, and the label and field selectors of a list or watch.
use serde_json::Value;

use crate::embedded::apiserver::admission::events;
use crate::embedded::apiserver::error::ApiResult;
use crate::embedded::apiserver::http::params::Query;
use crate::embedded::apiserver::resources::ResourceType;
use crate::embedded::apiserver::storage::selector::{FieldSelector, LabelSelector, field_string, labels_of};

/// A resource request parsed from the path.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// The served type.
    pub rt: ResourceType,
    /// Namespace segment, if any.
    pub namespace: Option<String>,
    /// Object name, if any.
    pub name: Option<String>,
    /// Subresource (`status`, `log`), if any.
    pub sub: Option<String>,
}

/// Parsed label and field selectors of a list or watch.
pub(super) struct Filter {
    labels: LabelSelector,
    fields: FieldSelector,
    namespace: Option<String>,
    rt: ResourceType,
}

impl Filter {
    /// Parses `labelSelector` and `fieldSelector` for a target.
    pub(super) fn parse(t: &Target, query: &Query) -> ApiResult<Self> {
        let labels = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or_default())?;
        let rt = t.rt.clone();
        let supported = |f: &str| field_supported(&rt, f);
        let fields = FieldSelector::parse(
            query.get("fieldSelector").map(String::as_str).unwrap_or_default(),
            &supported,
        )?;
        Ok(Self {
            labels,
            fields,
            namespace: t.namespace.clone(),
            rt,
        })
    }

    /// Whether a stored object passes the filter.
    pub(super) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns)
        {
            return false;
        }
        self.labels.matches(&labels_of(obj))
            && self
                .fields
                .matches(&|f| field_string(obj, &events::storage_field(&self.rt, f)))
    }

    /// Whether no label or field selector is set.
    pub(super) fn is_trivial(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}

fn field_supported(rt: &ResourceType, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    if let Some(custom) = &rt.custom {
        return custom
            .selectable_fields
            .iter()
            .any(|p| p.trim_start_matches('.') == field);
    }
    match rt.plural.as_str() {
        "events" => events::selectable(&events::storage_field(rt, field)),
        "pods" => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        "secrets" => field == "type",
        "nodes" => field == "spec.unschedulable",
        "services" => matches!(field, "spec.clusterIP" | "spec.type"),
        "namespaces" => field == "status.phase",
        _ => false,
    }
}
