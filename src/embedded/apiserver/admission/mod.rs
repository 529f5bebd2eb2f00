//! What a write must satisfy, type by type, as kube-apiserver states it (rules, field paths and
//! messages): the kind and version of a body ([`kinds`]), ObjectMeta ([`meta`], [`names`]), Pods
//! ([`pods`], [`podspec`], [`quantity`]), ConfigMaps and Secrets ([`config`]), Leases, Events,
//! CustomResourceDefinitions with their structural schemas and CEL rules (type-checked by
//! [`celcheck`]), and the decoding and defaulting that come first ([`rules`]). The lowest layer of
//! the API server: it sees objects and types, never the store or the wire.
pub(crate) mod cel;
pub(crate) mod celcheck;
pub(crate) mod config;
pub(crate) mod crd;
pub(crate) mod events;
pub(crate) mod kinds;
pub(crate) mod leases;
pub(crate) mod meta;
pub(crate) mod names;
pub(crate) mod network;
pub(crate) mod nodes;
pub(crate) mod pods;
pub(crate) mod podspec;
pub(crate) mod quantity;
pub(crate) mod rbac;
pub(crate) mod rules;
pub(crate) mod schema;
