//! `route_table`: routes of a VPC and the subnets that use them.

use super::{address_of, ec2, err, owned, set_tags, tag_spec, tagged, tags_of};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, null_as_empty, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_ec2::types::{ResourceType, RouteOrigin};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

static ROUTE: [Field; 3] = [
    Field::required("destination", FieldType::Cidr, Update::InPlace, "Destination range, e.g. \"0.0.0.0/0\"."),
    Field::optional(
        "internet_gateway",
        FieldType::Ref(&["internet_gateway"]),
        None,
        Update::InPlace,
        "Target: an internet gateway.",
    ),
    Field::optional("nat_gateway", FieldType::Ref(&["nat_gateway"]), None, Update::InPlace, "Target: a NAT gateway."),
];

pub static KIND: Kind = Kind::new("route_table", "A route table with its routes and subnet associations.", &RouteTable)
    .fields(&[
        Field::required("vpc", FieldType::Ref(&["vpc"]), Update::Replace, "The VPC."),
        Field::optional(
            "routes",
            FieldType::List(&FieldType::Table(&ROUTE)),
            Some("[]"),
            Update::InPlace,
            "Routes besides the VPC-local one.",
        ),
        Field::optional(
            "subnets",
            FieldType::List(&FieldType::Ref(&["subnet"])),
            Some("[]"),
            Update::InPlace,
            "Subnets associated with this table.",
        ),
        TAGS,
    ])
    .outputs(&[("id", "Route table id (rtb-...)")])
    .check(check);

/// One route as declared.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Route {
    destination: String,
    internet_gateway: Option<String>,
    nat_gateway: Option<String>,
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    vpc: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    routes: Vec<Route>,
    #[serde(default, deserialize_with = "null_as_empty")]
    subnets: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    /// Route destination -> (target field, target id).
    fn routes(&self) -> BTreeMap<String, (&'static str, String)> {
        let mut out = BTreeMap::new();
        for r in &self.routes {
            for (target, id) in [("internet_gateway", &r.internet_gateway), ("nat_gateway", &r.nat_gateway)] {
                if let Some(id) = id {
                    out.insert(r.destination.clone(), (target, id.clone()));
                }
            }
        }
        out
    }
}

struct RouteTable;

async fn put_route(cx: &Cx, id: &str, dest: &str, target: &(&str, String), replace: bool) -> Result<(), OpError> {
    let (op, res) = if replace {
        let mut call = ec2(cx).replace_route().route_table_id(id).destination_cidr_block(dest);
        call = match target.0 {
            "nat_gateway" => call.nat_gateway_id(&target.1),
            _ => call.gateway_id(&target.1),
        };
        ("ReplaceRoute", call.send().await.map(|_| ()).map_err(|e| err("ReplaceRoute", e)))
    } else {
        let mut call = ec2(cx).create_route().route_table_id(id).destination_cidr_block(dest);
        call = match target.0 {
            "nat_gateway" => call.nat_gateway_id(&target.1),
            _ => call.gateway_id(&target.1),
        };
        ("CreateRoute", call.send().await.map(|_| ()).map_err(|e| err("CreateRoute", e)))
    };
    match res {
        // A rerun after a crash between CreateRoute and its answer.
        Err(e) if op == "CreateRoute" && e.has_code("RouteAlreadyExists") => {
            Box::pin(put_route(cx, id, dest, target, true)).await
        }
        other => other,
    }
}

/// Subnet id -> association id of the table's explicit associations.
async fn associations(cx: &Cx, id: &str) -> Result<BTreeMap<String, String>, OpError> {
    let out =
        ec2(cx).describe_route_tables().route_table_ids(id).send().await.map_err(|e| err("DescribeRouteTables", e))?;
    Ok(out
        .route_tables()
        .iter()
        .flat_map(|t| t.associations())
        .filter(|a| a.main() != Some(true))
        .filter_map(|a| Some((a.subnet_id()?.to_owned(), a.route_table_association_id()?.to_owned())))
        .collect())
}

async fn disassociate(cx: &Cx, association: &str) -> Result<(), OpError> {
    gone_ok(
        ec2(cx)
            .disassociate_route_table()
            .association_id(association)
            .send()
            .await
            .map_err(|e| err("DisassociateRouteTable", e)),
    )
}

#[async_trait]
impl Typed for RouteTable {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        if !tagged(cx, &["route-table"]).await? {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut pages = ec2(cx).describe_route_tables().filters(owned(cx)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for t in page.map_err(|e| err("DescribeRouteTables", e))?.route_tables() {
                let (Some(id), Some(address)) = (t.route_table_id(), address_of(t.tags())) else { continue };
                // The VPC-local route and the endpoints' prefix-list routes are not ours to list.
                let routes: Vec<Route> = t
                    .routes()
                    .iter()
                    .filter(|r| r.origin() != Some(&RouteOrigin::CreateRouteTable))
                    .filter(|r| r.gateway_id() != Some("local"))
                    .filter_map(|r| {
                        let destination = r.destination_cidr_block()?.to_owned();
                        let (nat, gw) = (r.nat_gateway_id().map(str::to_owned), r.gateway_id().map(str::to_owned));
                        Some(match nat {
                            Some(nat) => Route { destination, internet_gateway: None, nat_gateway: Some(nat) },
                            None => Route { destination, internet_gateway: Some(gw?), nat_gateway: None },
                        })
                    })
                    .collect();
                let subnets = t
                    .associations()
                    .iter()
                    .filter(|a| a.main() != Some(true))
                    .filter_map(|a| a.subnet_id().map(str::to_owned))
                    .collect();
                let vpc = t.vpc_id().unwrap_or_default().to_owned();
                let attrs = Attrs { vpc, routes, subnets, tags: tags_of(t.tags()) };
                out.push(Found { id: id.to_owned(), address, attrs, outputs: () });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, token: &str) -> Result<String, OpError> {
        let out = ec2(cx)
            .create_route_table()
            .vpc_id(&w.vpc)
            .client_token(token)
            .tag_specifications(tag_spec(ResourceType::RouteTable, &w.tags))
            .send()
            .await
            .map_err(|e| err("CreateRouteTable", e))?;
        let id = out
            .route_table()
            .and_then(|t| t.route_table_id())
            .ok_or_else(|| OpError::fatal("CreateRouteTable", "no id"))?;
        // Routes and associations are made by the update from nothing to `w`.
        let empty = Attrs { routes: Vec::new(), subnets: Vec::new(), ..w.clone() };
        cx.born(id, &empty);
        Typed::update(self, cx, id, Some(&empty), w).await?;
        Ok(id.to_owned())
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let (old, new) = (h.routes(), w.routes());
        for (dest, target) in &new {
            match old.get(dest) {
                Some(t) if t == target => {}
                Some(_) => put_route(cx, id, dest, target, true).await?,
                None => put_route(cx, id, dest, target, false).await?,
            }
        }
        for dest in old.keys().filter(|d| !new.contains_key(*d)) {
            gone_ok(
                ec2(cx)
                    .delete_route()
                    .route_table_id(id)
                    .destination_cidr_block(dest)
                    .send()
                    .await
                    .map_err(|e| err("DeleteRoute", e)),
            )?;
        }
        let wanted = &w.subnets;
        if !crate::provider::same_set(&h.subnets, wanted) {
            let current = associations(cx, id).await?;
            for subnet in wanted.iter().filter(|s| !current.contains_key(*s)) {
                ec2(cx)
                    .associate_route_table()
                    .route_table_id(id)
                    .subnet_id(subnet)
                    .send()
                    .await
                    .map_err(|e| err("AssociateRouteTable", e))?;
            }
            for assoc in current.iter().filter(|(s, _)| !wanted.contains(s)).map(|(_, a)| a) {
                disassociate(cx, assoc).await?;
            }
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // What was found; a table that does not decode is taken apart the same way.
        if have.is_none_or(|h| !h.subnets.is_empty()) {
            for assoc in associations(cx, id).await?.values() {
                disassociate(cx, assoc).await?;
            }
        }
        gone_ok(ec2(cx).delete_route_table().route_table_id(id).send().await.map_err(|e| err("DeleteRouteTable", e)))
    }
}

/// Each route has exactly one target.
fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    let Some((Val::List(routes), _)) = r.fields.get("routes") else { return };
    for (i, (route, span)) in routes.iter().enumerate() {
        let Val::Table(t) = route else { continue };
        let targets = ["internet_gateway", "nat_gateway"].iter().filter(|k| t.contains_key(**k)).count();
        if targets != 1 {
            d.error(
                "bad-route",
                span.clone(),
                format!("{}.routes[{i}] needs exactly one target: internet_gateway or nat_gateway", r.address()),
                None,
            );
        }
    }
}
