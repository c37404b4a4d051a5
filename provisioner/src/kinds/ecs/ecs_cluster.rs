//! `ecs_cluster`: a Fargate cluster named `<stack>-<name>`, with Container Insights optional.

use super::{ecs, err, set_tags, tags};
use crate::error::{gone_ok, OpError, Transient};
use crate::provider::{Attributes, Cx, Live, Ops, ID_TAG, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub static KIND: Kind =
    Kind::new("ecs_cluster", "An ECS cluster named <stack>-<name>, for Fargate services.", &Cluster)
        .fields(&[
            Field::optional(
                "container_insights",
                FieldType::Bool,
                Some("false"),
                Update::InPlace,
                "CloudWatch Container Insights metrics (billed per metric).",
            ),
            Field::optional(
                "capacity_providers",
                FieldType::List(&FieldType::Enum(&["FARGATE", "FARGATE_SPOT"])),
                None,
                Update::InPlace,
                "Capacity providers services may use: [\"FARGATE\", \"FARGATE_SPOT\"] for a service's `spot_after`.",
            ),
            TAGS,
        ])
        .outputs(&[("id", "The cluster's name"), ("name", "<stack>-<name>"), ("arn", "Cluster ARN")]);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    #[serde(default)]
    container_insights: bool,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    capacity_providers: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attributes for Attrs {}

struct Cluster;

fn insights(on: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if on { "enabled" } else { "disabled" })
        .build()
}

#[async_trait]
impl Ops for Cluster {
    fn transient(&self) -> &'static [Transient] {
        // In an account's first use of ECS, AWS makes its service-linked role on the first call
        // and refuses clusters until the role is usable.
        const T: &[Transient] = &[Transient::new(
            "CreateCluster",
            "InvalidParameterException",
            2,
            "terraform-provider-aws internal/service/ecs/cluster.go: retryClusterCreate",
        )
        .saying("Unable to assume the service linked role")];
        T
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError> {
        let client = ecs(cx);
        let prefix = format!("{}-", cx.stack);
        let ours = super::cluster_arns(cx).await?;
        let mut out = Vec::new();
        // DescribeClusters takes 100 clusters a call, tags included.
        for batch in ours.chunks(100) {
            let d = client
                .describe_clusters()
                .set_clusters(Some(batch.to_vec()))
                .include(ClusterField::Tags)
                .include(ClusterField::Settings)
                .send()
                .await
                .map_err(|e| err("DescribeClusters", e))?;
            for c in d.clusters() {
                if c.status() == Some("INACTIVE") {
                    continue; // deleted clusters stay listed for a while
                }
                let (Some(name), Some(arn)) = (c.cluster_name(), c.cluster_arn()) else { continue };
                let tags: BTreeMap<String, String> = c
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                    .collect();
                if tags.get(STACK_TAG) != Some(&cx.stack) {
                    continue;
                }
                let insights = c
                    .settings()
                    .iter()
                    .any(|s| s.name() == Some(&ClusterSettingName::ContainerInsights) && s.value() == Some("enabled"));
                let address =
                    tags.get(ID_TAG).cloned().unwrap_or_else(|| format!("ecs_cluster.{}", &name[prefix.len()..]));
                let mut outputs = Map::new();
                outputs.insert("name".into(), json!(name));
                outputs.insert("arn".into(), json!(arn));
                let mut providers = c.capacity_providers().to_vec();
                providers.sort();
                out.push(Live {
                    id: name.to_owned(),
                    address,
                    attrs: json!({ "container_insights": insights, "capacity_providers": providers, "tags": tags }),
                    outputs,
                });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: &str, want: &Value, _token: &str) -> Result<String, OpError> {
        let w = Attrs::of(want)?;
        let name = format!("{}-{}", cx.stack, address.strip_prefix("ecs_cluster.").unwrap_or(address));
        // CreateCluster answers the existing cluster for a name it knows: a rerun is safe.
        ecs(cx)
            .create_cluster()
            .cluster_name(&name)
            .settings(insights(w.container_insights))
            .set_capacity_providers((!w.capacity_providers.is_empty()).then(|| w.capacity_providers.clone()))
            .set_tags(Some(tags(&w.tags)))
            .send()
            .await
            .map_err(|e| err("CreateCluster", e))?;
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError> {
        let (h, w) = (Attrs::of(have)?, Attrs::of(want)?);
        if h.container_insights != w.container_insights {
            // UpdateCluster, not UpdateClusterSettings: the same effect, and the emulator has
            // only the former.
            ecs(cx)
                .update_cluster()
                .cluster(id)
                .settings(insights(w.container_insights))
                .send()
                .await
                .map_err(|e| err("UpdateCluster", e))?;
        }
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v
        };
        if sorted(&h.capacity_providers) != sorted(&w.capacity_providers) {
            // No default strategy: each service names its own.
            ecs(cx)
                .put_cluster_capacity_providers()
                .cluster(id)
                .set_capacity_providers(Some(w.capacity_providers.clone()))
                .set_default_capacity_provider_strategy(Some(vec![]))
                .send()
                .await
                .map_err(|e| err("PutClusterCapacityProviders", e))?;
        }
        if h.tags != w.tags {
            // The cluster's id is its name; tags are set on its ARN.
            let d = ecs(cx).describe_clusters().clusters(id).send().await.map_err(|e| err("DescribeClusters", e))?;
            let arn = d.clusters().first().and_then(|c| c.cluster_arn()).unwrap_or_default().to_owned();
            set_tags(cx, &arn, &h.tags, &w.tags).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _: &Value) -> Result<(), OpError> {
        gone_ok(ecs(cx).delete_cluster().cluster(id).send().await.map_err(|e| err("DeleteCluster", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_typed_attributes_hold_every_declared_field() {
        let a = Attrs::of(&crate::schema::sample(KIND.fields)).unwrap();
        assert!(a.container_insights);
        assert!(Attrs::of(&json!({ "extra": 1 })).is_err());
    }
}
