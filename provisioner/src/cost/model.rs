//! The bill's model, below the stack and the kinds: what a kind's cost function reads
//! ([`CostCx`]) and gives ([`Part`]), the items to price (by kind name and cost function, not
//! the kind's declaration, so the schema can name these types without a circle), and the
//! breakdown and delta they add up to, priced from a [`PriceBook`].

use super::prices::PriceBook;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One thing a resource consumes in a month, priced by `price` (a key of the snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub what: String,
    pub price: String,
    /// Units a month (hours for what runs all month, GB, million requests, ...).
    pub quantity: f64,
    /// The most units a month, where autoscaling may add more.
    pub max: Option<f64>,
    /// Priced in this region instead of the resource's (a table's replica).
    pub region: Option<String>,
}

impl Part {
    pub fn new(what: impl Into<String>, price: impl Into<String>, quantity: f64) -> Self {
        Self { what: what.into(), price: price.into(), quantity, max: None, region: None }
    }

    /// Something that runs all month: `count` times the month's hours.
    pub fn hourly(cx: &CostCx<'_>, what: impl Into<String>, price: impl Into<String>, count: f64) -> Self {
        Self::new(what, price, count * cx.hours)
    }

    pub fn up_to(self, max: f64) -> Self {
        Self { max: Some(max), ..self }
    }

    pub fn in_region(self, region: &str) -> Self {
        Self { region: Some(region.to_owned()), ..self }
    }
}

/// A usage assumption a kind reads from the stack's `[usage]` (0 when the stack gives none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UsageKey {
    pub name: &'static str,
    pub unit: &'static str,
    pub doc: &'static str,
}

/// Requests a month reaching the stack's load balancers: read by the load balancer and its WAF,
/// declared once here so both read the same number.
pub const WEB_REQUESTS: UsageKey = UsageKey {
    name: "web_requests",
    unit: "requests a month",
    doc: "HTTP requests reaching the load balancers (and their WAF)",
};

/// What the map's load balancers send to clients a month (through CloudFront when one is in
/// front: then its data out, and the balancer's bytes processed).
pub const WEB_GB_OUT: UsageKey = UsageKey {
    name: "web_gb_out",
    unit: "GB a month",
    doc: "data the load balancers send to clients (processed bytes and data out)",
};

/// Requests a month reaching the stack's CloudFront distributions (and their WAF).
pub const CDN_REQUESTS: UsageKey = UsageKey {
    name: "cdn_requests",
    unit: "requests a month",
    doc: "HTTP requests reaching the CloudFront distributions (and their WAF)",
};

/// What a kind's cost function is given: the resource's attributes in the declared shape (as
/// the stack wants them, or as read back from AWS), its region, the usage, the other resources.
pub struct CostCx<'a> {
    pub address: &'a str,
    pub attrs: &'a Value,
    pub region: &'a str,
    pub hours: f64,
    usage: &'a BTreeMap<String, f64>,
    items: &'a [Item<'a>],
    /// The usage keys read, so the breakdown lists the assumptions it rests on and no others.
    read: std::cell::RefCell<Vec<UsageKey>>,
}

impl<'a> CostCx<'a> {
    /// A usage value from `[usage]` (0 when not given).
    pub fn usage(&self, key: &UsageKey) -> f64 {
        self.read.borrow_mut().push(*key);
        self.usage.get(key.name).copied().unwrap_or(0.0)
    }

    /// The attributes of another resource, by address (`subnet.hosts`).
    pub fn other(&self, address: &str) -> Option<&'a Value> {
        self.items.iter().find(|i| i.address == address).map(|i| i.attrs)
    }

    /// The attributes of the resources of `kind` whose `field` names this one (the autoscaling
    /// of a service).
    pub fn referring(&self, kind: &str, field: &str) -> Vec<&'a Value> {
        self.items
            .iter()
            .filter(|i| i.kind == kind && i.attrs.get(field).and_then(Value::as_str) == Some(self.address))
            .map(|i| i.attrs)
            .collect()
    }

    /// The resource's own attributes as its kind's type (`None` only for a value not in the
    /// declared shape, which a loaded stack and a discovery never give).
    pub fn attrs<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.attrs.clone()).ok()
    }
}

/// The cost of a kind that AWS does not charge for (a VPC, a role, a rule).
pub fn free(_: &CostCx<'_>) -> Vec<Part> {
    Vec::new()
}

/// A resource to price: its address, kind, attributes in the declared shape and region.
pub struct Item<'a> {
    pub address: String,
    /// The kind's name.
    pub kind: &'static str,
    /// The kind's cost function ([`crate::schema::Kind::cost`]).
    pub cost: fn(&CostCx<'_>) -> Vec<Part>,
    pub attrs: &'a Value,
    pub region: String,
}

/// One priced part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    pub what: String,
    pub price: String,
    pub region: String,
    pub quantity: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity_max: Option<f64>,
    pub unit: Option<String>,
    /// USD per unit; `None`: the snapshot has no such price here.
    pub unit_price: Option<f64>,
    /// Units the free tier covered.
    pub free_quantity: f64,
    pub monthly: Option<f64>,
    pub monthly_max: Option<f64>,
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceCost {
    pub address: String,
    pub kind: String,
    pub region: String,
    pub components: Vec<Component>,
    pub monthly: f64,
    pub monthly_max: f64,
    pub hourly: f64,
    /// Parts without a price: the resource's total leaves them out.
    pub unpriced: Vec<String>,
}

impl ResourceCost {
    /// Nothing to pay and nothing unknown.
    pub fn is_free(&self) -> bool {
        self.components.is_empty()
    }
}

/// A usage value as used, and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageUsed {
    pub name: String,
    pub value: f64,
    pub unit: String,
    pub doc: String,
    /// Written in the stack's `[usage]`, or 0 because it was not.
    pub given: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub snapshot: String,
    pub currency: String,
    pub hours_per_month: f64,
    pub resources: Vec<ResourceCost>,
    pub monthly: f64,
    pub monthly_max: f64,
    pub hourly: f64,
    /// What could not be priced, one sentence each.
    pub unpriced: Vec<String>,
    pub usage: Vec<UsageUsed>,
}

/// Prices `items` (in the order given, which decides who uses a free tier first).
pub fn breakdown(items: &[Item<'_>], book: &PriceBook, usage: &BTreeMap<String, f64>) -> Breakdown {
    // Free tiers left, for the least and the most a month.
    let mut left: BTreeMap<&str, (f64, f64)> =
        book.free_tier.iter().map(|(k, t)| (k.as_str(), (t.quantity, t.quantity))).collect();
    let mut resources = Vec::new();
    let mut used: BTreeMap<&str, UsageUsed> = BTreeMap::new();
    let mut missing_regions = std::collections::BTreeSet::new();
    for item in items {
        let cx = CostCx {
            address: &item.address,
            attrs: item.attrs,
            region: &item.region,
            hours: book.hours(),
            usage,
            items,
            read: Default::default(),
        };
        let mut rc = ResourceCost {
            address: item.address.clone(),
            kind: item.kind.to_owned(),
            region: item.region.clone(),
            components: Vec::new(),
            monthly: 0.0,
            monthly_max: 0.0,
            hourly: 0.0,
            unpriced: Vec::new(),
        };
        for part in (item.cost)(&cx) {
            let region = part.region.clone().unwrap_or_else(|| item.region.clone());
            let max_q = part.max.unwrap_or(part.quantity);
            let mut c = Component {
                what: part.what.clone(),
                price: part.price.clone(),
                region: region.clone(),
                quantity: part.quantity,
                quantity_max: part.max,
                unit: None,
                unit_price: None,
                free_quantity: 0.0,
                monthly: None,
                monthly_max: None,
                source: None,
            };
            match book.price(&region, &part.price) {
                Some(p) => {
                    let (mut q, mut qmax) = (part.quantity, max_q);
                    if let Some((min_left, max_left)) = p.free.as_deref().and_then(|f| left.get_mut(f)) {
                        let covered = q.min(*min_left);
                        *min_left -= covered;
                        c.free_quantity = covered;
                        q -= covered;
                        let covered_max = qmax.min(*max_left);
                        *max_left -= covered_max;
                        qmax -= covered_max;
                    }
                    c.unit = Some(p.unit.clone());
                    c.unit_price = Some(p.usd);
                    c.monthly = Some(q * p.usd);
                    c.monthly_max = Some(qmax * p.usd);
                    c.source = book.sources.get(&p.source).cloned();
                    rc.monthly += q * p.usd;
                    rc.monthly_max += qmax * p.usd;
                }
                None => {
                    if !book.has_region(&region) {
                        missing_regions.insert(region.clone());
                    }
                    rc.unpriced.push(format!("{} (no price `{}` in {region})", part.what, part.price));
                }
            }
            rc.components.push(c);
        }
        rc.hourly = rc.monthly / book.hours();
        resources.push(rc);
        for k in cx.read.take() {
            used.entry(k.name).or_insert_with(|| UsageUsed {
                name: k.name.to_owned(),
                value: usage.get(k.name).copied().unwrap_or(0.0),
                unit: k.unit.to_owned(),
                doc: k.doc.to_owned(),
                given: usage.contains_key(k.name),
            });
        }
    }
    let mut unpriced: Vec<String> = missing_regions
        .iter()
        .map(|r| {
            format!(
                "the price snapshot of {} has no prices for region {r}: what runs there is unpriced below; add [region.{r}] to the snapshot (docs/cost.md, \"Cost\")",
                book.snapshot.date
            )
        })
        .collect();
    unpriced.extend(resources.iter().flat_map(|r| r.unpriced.iter().map(move |u| format!("{}: {u}", r.address))));
    let monthly: f64 = resources.iter().map(|r| r.monthly).sum();
    Breakdown {
        snapshot: book.snapshot.date.clone(),
        currency: book.snapshot.currency.clone(),
        hours_per_month: book.hours(),
        monthly,
        monthly_max: resources.iter().map(|r| r.monthly_max).sum(),
        hourly: monthly / book.hours(),
        resources,
        unpriced,
        usage: used.into_values().collect(),
    }
}

/// How a plan changes the monthly bill: totals before and after, and each resource whose cost
/// changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delta {
    pub snapshot: String,
    pub before: f64,
    pub after: f64,
    pub delta: f64,
    pub before_max: f64,
    pub after_max: f64,
    pub resources: Vec<ResourceDelta>,
    pub unpriced: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceDelta {
    pub address: String,
    pub before: f64,
    pub after: f64,
    pub delta: f64,
}

/// Compares two breakdowns of the same stack (before and after a plan).
pub fn delta(before: &Breakdown, after: &Breakdown) -> Delta {
    let of = |b: &Breakdown| -> BTreeMap<String, f64> {
        b.resources.iter().map(|r| (r.address.clone(), r.monthly)).collect()
    };
    let (b, a) = (of(before), of(after));
    let mut addresses: Vec<&String> = b.keys().chain(a.keys()).collect();
    addresses.sort();
    addresses.dedup();
    let resources = addresses
        .into_iter()
        .filter_map(|addr| {
            let (x, y) = (b.get(addr).copied().unwrap_or(0.0), a.get(addr).copied().unwrap_or(0.0));
            // Below a hundredth of a cent a month is rounding, not a change.
            ((y - x).abs() >= 0.0001).then(|| ResourceDelta {
                address: addr.clone(),
                before: x,
                after: y,
                delta: y - x,
            })
        })
        .collect();
    let mut unpriced = after.unpriced.clone();
    unpriced.extend(before.unpriced.iter().filter(|u| !after.unpriced.contains(u)).cloned());
    Delta {
        snapshot: after.snapshot.clone(),
        before: before.monthly,
        after: after.monthly,
        delta: after.monthly - before.monthly,
        before_max: before.monthly_max,
        after_max: after.monthly_max,
        resources,
        unpriced,
    }
}

/// Helpers the kinds' cost functions share.
pub mod parts {
    use super::{CostCx, Part};

    /// A public IPv4 address per `count`, all month.
    pub fn public_ipv4(cx: &CostCx<'_>, what: &str, count: f64) -> Part {
        Part::hourly(cx, format!("public IPv4 ({what})"), "vpc.public_ipv4", count)
    }

    /// Millions, for prices per million requests.
    pub fn millions(n: f64) -> f64 {
        n / 1_000_000.0
    }
}
