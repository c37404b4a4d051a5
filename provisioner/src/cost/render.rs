//! Cost as text: the breakdown `provisioner cost` prints, and the lines a plan adds.

use super::model::{Breakdown, Delta};
use std::fmt::Write;

/// Dollars with cents (`$19.71`); below a cent, to a tenth of a cent (`$0.004`).
pub fn usd(x: f64) -> String {
    let x = if x.abs() < 0.000_05 { 0.0 } else { x };
    if x != 0.0 && x.abs() < 0.01 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// A signed amount (`+$10.02`, `-$24.03`).
fn signed(x: f64) -> String {
    if x < 0.0 {
        format!("-{}", usd(-x))
    } else {
        format!("+{}", usd(x))
    }
}

/// A quantity without needless decimals (`730`, `0.1728`).
fn num(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.to_owned()
    }
}

/// The breakdown, resource by resource and part by part, then the total, what could not be
/// priced and the usage assumed.
pub fn render(b: &Breakdown, stack: &str, region: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Monthly cost of stack {stack} ({region}): AWS list prices of {}, {}, {} hours a month\n",
        b.snapshot,
        b.currency,
        num(b.hours_per_month)
    );
    let scaling = b.monthly_max > b.monthly + 0.000_05;
    for r in b.resources.iter().filter(|r| !r.is_free()) {
        let range =
            if r.monthly_max > r.monthly + 0.000_05 { format!(" to {}", usd(r.monthly_max)) } else { String::new() };
        let _ = writeln!(out, "{:<83} {:>9}{range} a month, ${:.4} an hour", r.address, usd(r.monthly), r.hourly);
        for c in &r.components {
            let q = match c.quantity_max {
                Some(m) if m > c.quantity => format!("{} to {}", num(c.quantity), num(m)),
                _ => num(c.quantity),
            };
            let line = match (&c.unit, c.unit_price, c.monthly) {
                (Some(unit), Some(p), Some(m)) => {
                    let free =
                        if c.free_quantity > 0.0 { format!(", {} free", num(c.free_quantity)) } else { String::new() };
                    let here = if c.region == r.region { String::new() } else { format!(" in {}", c.region) };
                    let max = match c.monthly_max {
                        Some(mx) if mx > m + 0.000_05 => format!(" to {}", usd(mx)),
                        _ => String::new(),
                    };
                    let detail = format!("{q} {unit} x ${}{free}{here}", num_price(p));
                    format!("    {:<36} {detail:<46} {:>9}{max}", c.what, usd(m))
                }
                _ => format!("    {:<36} {q}: UNPRICED, no `{}` in {}", c.what, c.price, c.region),
            };
            let _ = writeln!(out, "{line}");
        }
    }
    let free: Vec<&str> = b.resources.iter().filter(|r| r.is_free()).map(|r| r.address.as_str()).collect();
    if !free.is_empty() {
        let _ = writeln!(out, "\nFree ({}): {}", free.len(), free.join(", "));
    }
    let _ = write!(out, "\nTotal: {} a month, ${:.4} an hour", usd(b.monthly), b.hourly);
    if scaling {
        let _ = write!(out, "; up to {} a month with autoscaling at its maximum", usd(b.monthly_max));
    }
    out.push('\n');
    if !b.unpriced.is_empty() {
        let _ = writeln!(out, "\nNot in the total (no price in the snapshot):");
        for u in &b.unpriced {
            let _ = writeln!(out, "  {u}");
        }
    }
    if !b.usage.is_empty() {
        let _ = writeln!(out, "\nUsage assumed (the stack's [usage]; 0 where it gives none):");
        for u in &b.usage {
            let given = if u.given { "" } else { " (not given)" };
            let _ = writeln!(out, "  {} = {} {}{given}: {}", u.name, num(u.value), u.unit, u.doc);
        }
    }
    out
}

/// A unit price with the digits it has (`0.027`, `0.00002`).
fn num_price(p: f64) -> String {
    let s = format!("{p:.8}");
    let s = s.trim_end_matches('0');
    let s = s.strip_suffix('.').map_or_else(|| s.to_owned(), |x| format!("{x}.00"));
    s
}

/// The lines a plan ends with: the monthly bill before and after, and each resource whose cost
/// moves. A plan that changes nothing priced says so in one line.
pub fn render_delta(d: &Delta) -> String {
    let mut out = String::new();
    if d.resources.is_empty() {
        let _ = writeln!(out, "Monthly cost: {} (unchanged; prices of {}).", usd(d.after), d.snapshot);
    } else {
        let _ = writeln!(
            out,
            "Monthly cost: {} -> {} ({}; prices of {}):",
            usd(d.before),
            usd(d.after),
            signed(d.delta),
            d.snapshot
        );
        let width = d.resources.iter().map(|r| r.address.len()).max().unwrap_or(0);
        for r in &d.resources {
            let _ = writeln!(
                out,
                "  {:<width$}  {:>10}  ({} -> {})",
                r.address,
                signed(r.delta),
                usd(r.before),
                usd(r.after)
            );
        }
    }
    if (d.after_max - d.before_max).abs() > 0.000_05 {
        let _ = writeln!(out, "  with autoscaling at its maximum: {} -> {}", usd(d.before_max), usd(d.after_max));
    }
    for u in &d.unpriced {
        let _ = writeln!(out, "  not priced: {u}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_like_a_bill() {
        assert_eq!(usd(19.71), "$19.71");
        assert_eq!(usd(0.0042), "$0.0042");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(signed(-24.0312), "-$24.03");
        assert_eq!(signed(10.0), "+$10.00");
        assert_eq!(num(730.0), "730");
        assert_eq!(num(0.1728), "0.1728");
        assert_eq!(num_price(0.027), "0.027");
        assert_eq!(num_price(5.0), "5.00");
        assert_eq!(num_price(0.00002), "0.00002");
    }
}
