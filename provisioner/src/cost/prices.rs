//! The price book: a dated snapshot of AWS list prices (`assets/prices/aws.toml`), read and
//! checked when a stack is loaded. A price is looked up in a region, then among the prices that
//! are the same everywhere; one that is missing is reported, never taken as zero.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

/// The snapshot the binary carries, for a stack that names none (`[stack] prices`).
const EMBEDDED: &str = include_str!("../../../assets/prices/aws.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceBook {
    pub snapshot: Snapshot,
    /// Page name to URL.
    pub sources: BTreeMap<String, String>,
    #[serde(default)]
    pub free_tier: BTreeMap<String, FreeTier>,
    #[serde(default)]
    pub global: BTreeMap<String, Price>,
    #[serde(default)]
    pub region: BTreeMap<String, BTreeMap<String, Price>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub date: String,
    pub currency: String,
    pub hours_per_month: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub usd: f64,
    pub unit: String,
    pub source: String,
    pub date: String,
    /// The free tier used up before this price is charged.
    pub free: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreeTier {
    /// Units a month, in the unit of the prices that name the tier.
    pub quantity: f64,
    pub unit: String,
    pub doc: String,
    pub source: String,
}

impl PriceBook {
    /// The snapshot built into the binary, read once.
    pub fn embedded() -> Arc<Self> {
        static BOOK: LazyLock<Arc<PriceBook>> = LazyLock::new(|| {
            // Checked by a unit test; a broken embedded file cannot ship.
            Arc::new(
                PriceBook::parse(EMBEDDED).unwrap_or_else(|e| panic!("the embedded price snapshot is broken: {e}")),
            )
        });
        BOOK.clone()
    }

    /// Reads a snapshot, with every reference inside it checked: each price's source is listed,
    /// each named free tier exists and has the price's unit, amounts are finite and not negative.
    pub fn parse(text: &str) -> Result<Self, String> {
        let book: Self = toml_edit::de::from_str(text).map_err(|e| e.to_string().trim().to_owned())?;
        let mut problems = Vec::new();
        if !book.snapshot.hours_per_month.is_finite() || book.snapshot.hours_per_month <= 0.0 {
            problems.push("snapshot.hours_per_month must be above 0".to_owned());
        }
        if book.snapshot.currency != "USD" {
            problems.push(format!("snapshot.currency is {}; prices are read as USD", book.snapshot.currency));
        }
        for (name, t) in &book.free_tier {
            if !book.sources.contains_key(&t.source) {
                problems.push(format!("free_tier.{name}: source `{}` is not under [sources]", t.source));
            }
        }
        let all = book
            .global
            .iter()
            .map(|(k, p)| ("global".to_owned(), k, p))
            .chain(book.region.iter().flat_map(|(r, m)| m.iter().map(move |(k, p)| (format!("region.{r}"), k, p))));
        for (section, key, p) in all {
            let at = format!("[{section}] \"{key}\"");
            if !(p.usd.is_finite() && p.usd >= 0.0) {
                problems.push(format!("{at}: usd must be a number of 0 or more"));
            }
            if !book.sources.contains_key(&p.source) {
                problems.push(format!("{at}: source `{}` is not under [sources]", p.source));
            }
            match p.free.as_ref().map(|f| (f, book.free_tier.get(f))) {
                Some((f, None)) => problems.push(format!("{at}: free tier `{f}` is not under [free_tier]")),
                Some((f, Some(t))) if t.unit != p.unit && !(t.unit == "GB" && p.unit == "GB-month") => {
                    problems.push(format!("{at}: its unit `{}` is not free tier `{f}`'s `{}`", p.unit, t.unit));
                }
                _ => {}
            }
        }
        if problems.is_empty() {
            Ok(book)
        } else {
            Err(problems.join("; "))
        }
    }

    /// The price of `key` in `region`, or the same-everywhere one.
    pub fn price(&self, region: &str, key: &str) -> Option<&Price> {
        self.region.get(region).and_then(|m| m.get(key)).or_else(|| self.global.get(key))
    }

    pub fn has_region(&self, region: &str) -> bool {
        self.region.contains_key(region)
    }

    pub fn hours(&self) -> f64 {
        self.snapshot.hours_per_month
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_snapshot_is_complete_for_every_region_it_lists() {
        let book = PriceBook::embedded();
        assert_eq!(book.hours(), 730.0);
        // Every region prices what every other does: a key missing in one would price a stack
        // there lower without a word.
        let keys: Vec<Vec<&String>> = book.region.values().map(|m| m.keys().collect()).collect();
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "regions price different keys");
        for r in ["eu-central-1", "us-east-1", "eu-west-1", "ap-southeast-2"] {
            assert!(book.has_region(r), "{r}");
        }
        assert_eq!(book.price("eu-central-1", "vpc.public_ipv4").map(|p| p.usd), Some(0.005));
        assert_eq!(book.price("eu-central-1", "ec2.instance.t3.small").map(|p| p.usd), Some(0.024));
        assert!(book.price("eu-north-1", "ec2.instance.t3.small").is_none());
    }

    #[test]
    fn a_broken_snapshot_says_what_is_wrong() {
        let base = "[snapshot]\ndate = \"2026-01-01\"\ncurrency = \"USD\"\nhours_per_month = 730\n[sources]\nx = \"https://example.org\"\n";
        let e = PriceBook::parse(&format!(
            "{base}[global]\n\"a\" = {{ usd = 1, unit = \"hour\", source = \"y\", date = \"d\", free = \"z\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("source `y` is not under [sources]") && e.contains("free tier `z`"), "{e}");
        let e = PriceBook::parse(&format!(
            "{base}[global]\n\"a\" = {{ usd = -1, unit = \"hour\", source = \"x\", date = \"d\" }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("usd must be"), "{e}");
        let e = PriceBook::parse(&format!("{base}[global]\n\"a\" = {{ usd = 1, unit = \"hour\", source = \"x\" }}\n"))
            .unwrap_err();
        assert!(e.contains("date"), "{e}");
    }
}
