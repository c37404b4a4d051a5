//! The provisioner: declarative TOML stacks reconciled against AWS. This part: the stack model,
//! the resource-kind declarations, and validation, JSON Schema and docs derived from them.

pub mod diag;
pub mod docs;
pub mod engine;
pub mod kinds;
pub mod lock;
pub mod plan;
pub mod provider;
pub mod schema;
pub mod stack;
pub mod walk;
