//! What a write must satisfy, type by type: the built-in type rules, CustomResourceDefinitions and
//! their structural schemas and CEL rules, Events. The lowest layer of the API server: it sees
//! objects and types, never the store or the wire.
pub(crate) mod cel;
pub(crate) mod crd;
pub(crate) mod events;
pub(crate) mod names;
pub(crate) mod rules;
pub(crate) mod schema;
