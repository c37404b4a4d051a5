//! `waf_association`: a regional web ACL in front of a load balancer. Associations carry no
//! tags, so one is named after the load balancer it protects (`[waf_association.web]` with
//! `resource = "load_balancer.web"`; a resource has at most one ACL) and found by asking each of
//! the stack's load balancers for its ACL.

use super::{err, waf};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    web_acl: String,
    resource: String,
}

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
impl Typed for Association {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
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
            out.push(Found {
                id: arn.to_owned(),
                address: format!("{}.{}", KIND.name, Address::parse(lb_address).name()),
                attrs: Attrs { web_acl: acl.arn().to_owned(), resource: arn.to_owned() },
                outputs: (),
            });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        waf(cx)
            .associate_web_acl()
            .web_acl_arn(&w.web_acl)
            .resource_arn(&w.resource)
            .send()
            .await
            .map_err(|e| err("AssociateWebACL", e))?;
        Ok(w.resource.clone())
    }

    /// Associating another ACL replaces the old association in one call.
    async fn update(&self, cx: &Cx, id: &str, _: Option<&Attrs>, w: &Attrs) -> Result<(), OpError> {
        waf(cx)
            .associate_web_acl()
            .web_acl_arn(&w.web_acl)
            .resource_arn(id)
            .send()
            .await
            .map_err(|e| err("AssociateWebACL", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(waf(cx).disassociate_web_acl().resource_arn(id).send().await.map_err(|e| err("DisassociateWebACL", e)))
    }
}
