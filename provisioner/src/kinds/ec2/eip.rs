//! `eip`: an Elastic IP address.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Kind, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::types::{DomainType, ResourceType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind =
    Kind::new("eip", "An Elastic IP address in the VPC scope (for a NAT gateway, for example).", &Eip)
        .fields(&[TAGS])
        .outputs(&[("id", "Allocation id (eipalloc-...)"), ("public_ip", "The address")])
        .cost(cost, &[])
        // An Elastic IP in a VPC is associated through its gateway ("Gateway.NotAttached"), and
        // the gateway cannot be detached while addresses are mapped.
        .after(&["internet_gateway"]);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// An Elastic IP is a public IPv4 address, paid by the hour whether attached or not.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    vec![crate::cost::parts::public_ipv4(cx, "the address", 1.0)]
}

#[derive(Default, Serialize)]
struct Outputs {
    public_ip: Option<String>,
}

struct Eip;

#[async_trait]
impl Typed for Eip {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        // AWS says elastic-ip, moto vpc-elastic-ip.
        if !tagged(cx, &["elastic-ip", "vpc-elastic-ip"]).await? {
            return Ok(Vec::new());
        }
        // DescribeAddresses has no pages: it answers every address at once.
        let out =
            ec2(cx).describe_addresses().filters(owned(cx)).send().await.map_err(|e| err("DescribeAddresses", e))?;
        Ok(out
            .addresses()
            .iter()
            .filter_map(|a| {
                Some(Found {
                    id: a.allocation_id()?.to_owned(),
                    address: address_of(a.tags())?,
                    attrs: Attrs { tags: tags_of(a.tags()) },
                    outputs: Outputs { public_ip: a.public_ip().map(str::to_owned) },
                })
            })
            .collect())
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(tag_spec(ResourceType::ElasticIp, &want.tags))
            .send()
            .await
            .map_err(|e| err("AllocateAddress", e))?;
        out.allocation_id().map(str::to_owned).ok_or_else(|| OpError::fatal("AllocateAddress", "no id"))
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        set_tags(cx, id, &known(have)?.tags, &want.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ec2(cx).release_address().allocation_id(id).send().await.map_err(|e| err("ReleaseAddress", e)))
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// $0.005 an hour for the address, 730 hours.
    #[test]
    fn an_address_costs_its_hours() {
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[eip.a]\n");
        close(of(&b, "eip.a").monthly, 3.65);
    }
}
