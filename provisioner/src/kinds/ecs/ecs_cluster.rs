//! `ecs_cluster`: a Fargate cluster named `<stack>-<name>`, with Container Insights optional.

use super::{ecs, err, set_tags, tags};
use crate::error::{gone_ok, OpError, Transient};
use crate::provider::{known, Address, Cx, Found, Typed, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// In an account's first use of ECS, AWS makes its service-linked role on the first call
/// and refuses clusters until the role is usable.
const TRANSIENT: &[Transient] = &[Transient::new(
    "CreateCluster",
    "InvalidParameterException",
    2,
    "terraform-provider-aws internal/service/ecs/cluster.go: retryClusterCreate",
)
.saying("Unable to assume the service linked role")];

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
        .outputs(&[("id", "The cluster's name"), ("name", "<stack>-<name>"), ("arn", "Cluster ARN")])
        .transient(TRANSIENT);

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    #[serde(default)]
    container_insights: bool,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    capacity_providers: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
}

struct Cluster;

fn insights(on: bool) -> ClusterSetting {
    ClusterSetting::builder()
        .name(ClusterSettingName::ContainerInsights)
        .value(if on { "enabled" } else { "disabled" })
        .build()
}

#[async_trait]
impl Typed for Cluster {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
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
                let address = Address::found(&tags, KIND.name, &name[prefix.len()..]);
                let mut capacity_providers = c.capacity_providers().to_vec();
                capacity_providers.sort();
                let attrs = Attrs { container_insights: insights, capacity_providers, tags };
                let outputs = Outputs { name: name.to_owned(), arn: arn.to_owned() };
                out.push(Found { id: name.to_owned(), address, attrs, outputs });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
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

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
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

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ecs(cx).delete_cluster().cluster(id).send().await.map_err(|e| err("DeleteCluster", e)))
    }
}
