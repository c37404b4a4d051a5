//! The registry of resource kinds, grouped by AWS service: one file per kind under its
//! service's folder, with that service's shared helpers (client, error codes, tags) beside
//! them, and one line per kind in its service's `kinds!` list.

use crate::schema::Kind;
use std::sync::LazyLock;

/// Declares a service's kind modules and lists their `KIND`s.
macro_rules! kinds {
    ($($m:ident),* $(,)?) => {
        $(pub mod $m;)*
        /// This service's kinds, in the order `docs` lists them.
        pub static KINDS: &[&$crate::schema::Kind] = &[$(&$m::KIND),*];
    };
}
pub(crate) use kinds;

pub mod dynamodb;
pub mod ec2;
pub mod logs;

static ALL: LazyLock<Vec<&'static Kind>> = LazyLock::new(|| [ec2::KINDS, dynamodb::KINDS, logs::KINDS].concat());

/// Every kind a stack may use, in the order `docs` lists them.
pub fn all() -> &'static [&'static Kind] {
    &ALL
}

pub fn find(name: &str) -> Option<&'static Kind> {
    all().iter().copied().find(|k| k.name == name)
}
