//! The provisioner: declarative TOML stacks reconciled against AWS with no state file. The stack
//! model and its validation, the resource kinds (declaration and AWS side), the plan, the engine
//! that discovers and applies, the walker, and the stack lock. Nothing here prints.

pub mod backoff;
pub mod cost;
pub mod diag;
pub mod docs;
pub mod engine;
pub mod error;
pub mod image;
pub mod kinds;
pub mod lock;
pub mod plan;
pub mod provider;
pub mod schema;
pub mod stack;
pub mod walk;

/// Parses and checks a stack file against every registered kind (see [`stack::parse`]).
pub fn load(
    file: &str,
    src: &str,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<stack::Stack, diag::Diags> {
    stack::parse(kinds::all(), file, src, vars)
}

/// [`load`], with `unset` saying what a variable without a default becomes when not given.
pub fn load_with(
    file: &str,
    src: &str,
    vars: &std::collections::BTreeMap<String, String>,
    unset: stack::Unset,
) -> Result<stack::Stack, diag::Diags> {
    stack::parse_with(kinds::all(), file, src, vars, unset)
}
