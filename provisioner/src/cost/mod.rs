//! What a stack costs a month. Each kind says what it consumes ([`Part`]s: hours, GB, requests,
//! each under a price key) from its attributes and the stack's `[usage]`; this module prices
//! the parts from the snapshot ([`prices`]), uses up the free tiers across the stack, and adds up
//! per resource. The same function prices what a plan starts from (read back from AWS) and what
//! it ends with, so the plan's delta and `provisioner cost` cannot disagree.

pub mod model;
pub mod prices;
mod render;
pub mod site;

pub use model::*;
pub use prices::PriceBook;
pub use render::{render, render_delta};

use serde_json::Value;

/// The stack as declared, priced (what `provisioner cost` shows).
pub fn of_stack(stack: &crate::stack::Stack) -> Breakdown {
    let wanted: Vec<(String, &'static crate::schema::Kind, Value, String)> = stack
        .resources
        .iter()
        .map(|r| {
            (r.address(), r.kind, crate::schema::own(&crate::stack::desired(r, stack)), stack.region_of(r).to_owned())
        })
        .collect();
    let items: Vec<Item<'_>> = wanted
        .iter()
        .map(|(a, k, v, r)| Item { address: a.clone(), kind: k.name, cost: k.cost, attrs: v, region: r.clone() })
        .collect();
    breakdown(&items, &stack.prices, &stack.usage)
}
