//! The CustomResourceDefinition generated from the types; `deploy/crd.yaml` is this output.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;

use super::Pipeline;

/// The Pipeline CRD as an object.
pub fn crd() -> CustomResourceDefinition {
    let mut crd = Pipeline::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            unwrap_descriptions(schema);
        }
    }
    crd
}

/// Doc comments are wrapped at the source's line width; `kubectl explain` wraps text itself, so single
/// line breaks become spaces. Blank lines (paragraphs) stay.
fn unwrap_descriptions(schema: &mut JSONSchemaProps) {
    if let Some(description) = &mut schema.description {
        let paragraphs: Vec<String> = description
            .split("\n\n")
            .map(|p| p.split('\n').map(str::trim).collect::<Vec<_>>().join(" "))
            .collect();
        *description = paragraphs.join("\n\n");
    }
    let children = schema.properties.iter_mut().flat_map(|p| p.values_mut());
    let items = schema.items.iter_mut().filter_map(|i| match i {
        JSONSchemaPropsOrArray::Schema(s) => Some(s.as_mut()),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    });
    let additional = schema.additional_properties.iter_mut().filter_map(|a| match a {
        JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
        JSONSchemaPropsOrBool::Bool(_) => None,
    });
    for child in children.chain(items).chain(additional) {
        unwrap_descriptions(child);
    }
}

/// The Pipeline CRD as YAML, exactly as `cdkube crd` prints it.
pub fn crd_yaml() -> String {
    // Serialising a value we built cannot fail; a failure here would be a bug in the types.
    serde_yaml::to_string(&crd()).expect("the generated CRD serialises to YAML")
}
