//! The registry of resource kinds: one file per kind, one line here per kind.

use crate::schema::Kind;

mod eip;
mod internet_gateway;
mod nat_gateway;
mod route_table;
mod security_group;
mod subnet;
mod vpc;
mod vpc_endpoint;

/// Every kind a stack may use, in the order `docs` lists them.
static ALL: [&Kind; 8] = [
    &vpc::KIND,
    &subnet::KIND,
    &internet_gateway::KIND,
    &eip::KIND,
    &nat_gateway::KIND,
    &route_table::KIND,
    &security_group::KIND,
    &vpc_endpoint::KIND,
];

pub fn all() -> &'static [&'static Kind] {
    &ALL
}

pub fn find(name: &str) -> Option<&'static Kind> {
    all().iter().copied().find(|k| k.name == name)
}
