//! The CustomResourceDefinition generated from the types; `deploy/crd.yaml` is this output.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use super::Pipeline;

/// The Pipeline CRD as an object.
pub fn crd() -> CustomResourceDefinition {
    Pipeline::crd()
}

/// The Pipeline CRD as YAML, exactly as `cdkube crd` prints it.
pub fn crd_yaml() -> String {
    // Serialising a value we built cannot fail; a failure here would be a bug in the types.
    serde_yaml::to_string(&crd()).expect("the generated CRD serialises to YAML")
}
