//! `nat_gateway`: outbound internet for private subnets (costs about $33-38 a month).

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{Filter, NatGatewayState, ResourceType};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

pub static KIND: Kind = Kind::new("nat_gateway", "A public NAT gateway in a public subnet, with an Elastic IP.", &Nat)
    .fields(&[
        Field::required("subnet", FieldType::Ref(&["subnet"]), Update::Replace, "The public subnet it sits in."),
        Field::required("eip", FieldType::Ref(&["eip"]), Update::Replace, "Its Elastic IP."),
        TAGS,
    ])
    .outputs(&[("id", "NAT gateway id (nat-...)")])
    .cost(cost, &[NAT_GB])
    // A public NAT gateway fails without the VPC's gateway, and holds an address mapped.
    .after(&["internet_gateway"]);

/// Traffic through the NAT gateways (their public address is the `eip` they hold, priced there).
const NAT_GB: crate::cost::UsageKey =
    crate::cost::UsageKey { name: "nat_gb", unit: "GB a month", doc: "data processed by each NAT gateway" };

fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::Part;
    vec![
        Part::hourly(cx, "NAT gateway", "vpc.nat_gateway", 1.0),
        Part::new("data processed", "vpc.nat_gateway_data", cx.usage(&NAT_GB)),
    ]
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    subnet: String,
    eip: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

struct Nat;

/// How long AWS may take to bring a NAT gateway up or down (usually one to three minutes).
const WAIT: Duration = Duration::from_secs(10 * 60);

#[async_trait]
impl Typed for Nat {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        // AWS says natgateway, moto nat-gateway.
        if !tagged(cx, &["natgateway", "nat-gateway"]).await? {
            return Ok(Vec::new());
        }
        // Deleted gateways stay visible (with their tags) for an hour: only living ones count.
        let alive = Filter::builder().name("state").values("pending").values("available").build();
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_nat_gateways().filter(owned(cx)).filter(alive).into_paginator().send();
        while let Some(page) = pages.next().await {
            for g in page.map_err(|e| err("DescribeNatGateways", e))?.nat_gateways() {
                if matches!(g.state(), Some(NatGatewayState::Deleting | NatGatewayState::Deleted)) {
                    continue;
                }
                let (Some(id), Some(address)) = (g.nat_gateway_id(), address_of(g.tags())) else { continue };
                let eip = g.nat_gateway_addresses().first().and_then(|a| a.allocation_id());
                let attrs = Attrs {
                    subnet: g.subnet_id().unwrap_or_default().to_owned(),
                    eip: eip.unwrap_or_default().to_owned(),
                    tags: tags_of(g.tags()),
                };
                out.push(Found { id: id.to_owned(), address, attrs, outputs: () });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, want: &Attrs, token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_nat_gateway()
            .subnet_id(&want.subnet)
            .allocation_id(&want.eip)
            .client_token(token)
            .tag_specifications(tag_spec(ResourceType::Natgateway, &want.tags))
            .send()
            .await
            .map_err(|e| err("CreateNatGateway", e))?;
        let id = out
            .nat_gateway()
            .and_then(|g| g.nat_gateway_id())
            .ok_or_else(|| OpError::fatal("CreateNatGateway", "no id"))?;
        cx.born(id, want);
        // Tagged at birth: the update only waits until it is available.
        Typed::update(self, cx, id, Some(want), want).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        set_tags(cx, id, &known(have)?.tags, &want.tags).await?;
        // Routes need it available (a create that failed waiting resumes here too).
        ec2(cx)
            .wait_until_nat_gateway_available()
            .nat_gateway_ids(id)
            .wait(WAIT)
            .await
            .map_err(|e| OpError::retryable("wait NatGatewayAvailable", format!("{id}: {e}")))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ec2(cx).delete_nat_gateway().nat_gateway_id(id).send().await.map_err(|e| err("DeleteNatGateway", e)))?;
        // Its address and subnet are held until it is gone.
        ec2(cx)
            .wait_until_nat_gateway_deleted()
            .nat_gateway_ids(id)
            .wait(WAIT)
            .await
            .map_err(|e| OpError::retryable("wait NatGatewayDeleted", format!("{id}: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// eu-central-1: $0.052 an hour and per GB; its address priced on the eip.
    #[test]
    fn hours_and_data_and_the_address_on_its_eip() {
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.pub]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n[subnet.priv]\nvpc = \"vpc.v\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n[eip.n]\n[nat_gateway.n]\nsubnet = \"subnet.pub\"\neip = \"eip.n\"\n[usage]\nnat_gb = 100\n");
        close(of(&b, "nat_gateway.n").monthly, 730.0 * 0.052 + 100.0 * 0.052);
        close(of(&b, "eip.n").monthly, 3.65);
    }
}
