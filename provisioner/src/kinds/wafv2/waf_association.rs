//! `waf_association`: a regional web ACL in front of a load balancer. Associations carry no
//! tags, so one is named after the load balancer it protects (`[waf_association.web]` with
//! `resource = "load_balancer.web"`; a resource has at most one ACL) and found by asking each of
//! the stack's load balancers for its ACL.

use super::{err, waf};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{Attributes, Cx, Live, Ops};
use crate::schema::{Field, FieldType, Kind, Security, Update};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{json, Map, Value};

pub static KIND: Kind = Kind::new(
    "waf_association",
    "A regional web ACL protecting a load balancer; named after it ([waf_association.web] protects load_balancer.web).",
    &Association,
)
.fields(&[
    Field::required("web_acl", FieldType::Ref(&["waf_web_acl"]), Update::Replace, "The web ACL (REGIONAL scope).")
        .security(Security::Guard(crate::schema::removed)),
    Field::required(
        "resource",
        FieldType::Ref(&["load_balancer"]),
        Update::Replace,
        "The load balancer it protects, of the same name as this association.",
    ),
])
.outputs(&[("id", "The protected resource's ARN")])
.check(check);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    web_acl: String,
    resource: String,
}

impl Attributes for Attrs {}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    let expected = format!("load_balancer.{}", r.name);
    if let Some((target, span)) = r.str("resource") {
        if target != expected {
            d.error(
                "association-name",
                span,
                format!("{} protects {target}; an association is named after what it protects", r.address()),
                Some(format!("rename the table [waf_association.{}]", target.split_once('.').map_or(target, |t| t.1))),
            );
        }
    }
    if let Some((acl, span)) = r.str("web_acl") {
        let scope = stack.get(acl).and_then(|a| a.str("scope")).map(|(s, _)| s.to_owned());
        if scope.as_deref() == Some("CLOUDFRONT") {
            d.error(
                "association-scope",
                span,
                format!("{acl} has CloudFront scope; a load balancer needs a REGIONAL ACL"),
                Some("a distribution names its ACL itself".into()),
            );
        }
    }
}

struct Association;

#[async_trait]
impl Ops for Association {
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError> {
        let mut out = Vec::new();
        for (lb, tags) in crate::kinds::elbv2::load_balancers(cx).await? {
            let (Some(arn), Some(lb_address)) = (lb.load_balancer_arn(), tags.get(crate::provider::ID_TAG)) else {
                continue;
            };
            let got = waf(cx)
                .get_web_acl_for_resource()
                .resource_arn(arn)
                .send()
                .await
                .map_err(|e| err("GetWebACLForResource", e))?;
            let Some(acl) = got.web_acl() else { continue };
            // Only an ACL of this stack makes the association the stack's.
            if acl.description().is_none_or(|d| crate::provider::address_in(cx, d).is_none()) {
                continue;
            }
            let name = lb_address.split_once('.').map_or(lb_address.as_str(), |(_, n)| n);
            out.push(Live {
                id: arn.to_owned(),
                address: format!("waf_association.{name}"),
                attrs: json!({ "web_acl": acl.arn(), "resource": arn }),
                outputs: Map::new(),
            });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: &str, want: &Value, _token: &str) -> Result<String, OpError> {
        let w = Attrs::of(want)?;
        waf(cx)
            .associate_web_acl()
            .web_acl_arn(&w.web_acl)
            .resource_arn(&w.resource)
            .send()
            .await
            .map_err(|e| err("AssociateWebACL", e))?;
        Ok(w.resource)
    }

    /// Associating another ACL replaces the old association in one call.
    async fn update(&self, cx: &Cx, id: &str, _: &Value, want: &Value) -> Result<(), OpError> {
        let w = Attrs::of(want)?;
        waf(cx)
            .associate_web_acl()
            .web_acl_arn(&w.web_acl)
            .resource_arn(id)
            .send()
            .await
            .map_err(|e| err("AssociateWebACL", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _: &Value) -> Result<(), OpError> {
        gone_ok(waf(cx).disassociate_web_acl().resource_arn(id).send().await.map_err(|e| err("DisassociateWebACL", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_attributes_hold_every_declared_field() {
        let a = Attrs::of(&crate::schema::sample(KIND.fields)).unwrap();
        assert_eq!(a.resource, "load_balancer.x");
        assert!(Attrs::of(&json!({ "web_acl": "a", "resource": "r", "extra": 1 })).is_err());
    }
}
