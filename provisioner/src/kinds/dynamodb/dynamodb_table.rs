//! `dynamodb_table`: an on-demand table named `<stack>-<name>`, its keys and indexes read from a
//! layout file in the shape of `CreateTable` (the services' own `table.json`), with TTL,
//! point-in-time recovery, deletion protection and a stream.

use super::{ddb, err};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError, Transient};
use crate::provider::{known, tag_changes, Address, Cx, Found, Typed, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Update, REGIONS, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, CreateGlobalSecondaryIndexAction, CreateReplicationGroupMemberAction,
    DeleteGlobalSecondaryIndexAction, DeleteReplicationGroupMemberAction, GlobalSecondaryIndex,
    GlobalSecondaryIndexUpdate, IndexStatus, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection,
    ProjectionType, ReplicaStatus, ReplicationGroupUpdate, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableStatus, Tag, TimeToLiveSpecification, TimeToLiveStatus,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

const STREAMS: &[&str] = &["none", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES", "KEYS_ONLY"];

/// AWS enables continuous backups some minutes after CreateTable; until then it answers
/// "Backups are being enabled" (the AWS provider retries it for 20 minutes).
const TRANSIENT: &[Transient] = &[Transient::new(
    "UpdateContinuousBackups",
    "ContinuousBackupsUnavailableException",
    20,
    "terraform-provider-aws internal/service/dynamodb/table.go: updatePITR",
)];

pub static KIND: Kind = Kind::new(
    "dynamodb_table",
    "An on-demand DynamoDB table named <stack>-<name> (its output `name`).",
    &Table,
)
.fields(&[
    Field::required(
        "layout",
        FieldType::JsonFile,
        Update::InPlace,
        "Keys and indexes as CreateTable takes them (KeySchema, AttributeDefinitions, GlobalSecondaryIndexes): \
             the services' services/src/store/table.json, so the table is the one their queries use. A changed key \
             replaces the table (and its data); indexes are added and removed in place, one at a time.",
    ),
    Field::optional(
        "ttl_attribute",
        FieldType::String,
        None,
        Update::InPlace,
        "Attribute holding each item's expiry (epoch seconds).",
    ),
    Field::optional(
        "point_in_time_recovery",
        FieldType::Bool,
        Some("false"),
        Update::InPlace,
        "Continuous backups, restorable to any second of the last 35 days.",
    ),
    Field::optional(
        "deletion_protection",
        FieldType::Bool,
        Some("false"),
        Update::InPlace,
        "Refuse DeleteTable: turn it off (apply) before the table can be destroyed.",
    ),
    Field::optional(
        "stream",
        FieldType::Enum(STREAMS),
        Some("\"none\""),
        Update::InPlace,
        "DynamoDB stream view type.",
    ),
    Field::optional(
        "replicas",
        FieldType::List(&FieldType::Enum(REGIONS)),
        None,
        Update::InPlace,
        "Other regions holding a replica: a global table (version 2019.11.21). Needs stream = \"NEW_AND_OLD_IMAGES\".",
    ),
    TAGS,
])
.outputs(&[
    ("id", "The table's name"),
    ("name", "<stack>-<name>"),
    ("arn", "Table ARN"),
    ("stream_arn", "Latest stream ARN"),
])
.check(check)
.normalize(normalize)
.cost(cost, &[DYNAMODB_READS, DYNAMODB_WRITES, DYNAMODB_STORAGE_GB])
.transient(TRANSIENT);

/// Keys and indexes in `CreateTable`'s shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Layout {
    key_schema: Vec<Key>,
    attribute_definitions: Vec<Attribute>,
    #[serde(default)]
    global_secondary_indexes: Vec<Index>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Key {
    attribute_name: String,
    key_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Attribute {
    attribute_name: String,
    attribute_type: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Index {
    index_name: String,
    key_schema: Vec<Key>,
    #[serde(default = "all")]
    projection: Projected,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Projected {
    projection_type: String,
    /// With `INCLUDE`: the attributes besides the keys the index holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    non_key_attributes: Vec<String>,
}

fn all() -> Projected {
    Projected { projection_type: "ALL".into(), non_key_attributes: Vec::new() }
}

impl Projected {
    fn sdk(&self) -> Projection {
        Projection::builder()
            .projection_type(ProjectionType::from(self.projection_type.as_str()))
            .set_non_key_attributes((!self.non_key_attributes.is_empty()).then(|| self.non_key_attributes.clone()))
            .build()
    }

    /// What DynamoDB's Projection takes: INCLUDE with 1 to 20 attributes, the others with none.
    fn problem(&self, index: &str) -> Option<String> {
        match (self.projection_type.as_str(), self.non_key_attributes.len()) {
            ("ALL" | "KEYS_ONLY", 0) | ("INCLUDE", 1..=20) => None,
            ("ALL" | "KEYS_ONLY", _) => {
                Some(format!("index `{index}`: NonKeyAttributes go with ProjectionType INCLUDE only"))
            }
            ("INCLUDE", n) => Some(format!("index `{index}`: INCLUDE needs 1 to 20 NonKeyAttributes, not {n}")),
            (other, _) => Some(format!("index `{index}`: ProjectionType {other:?} is not ALL, KEYS_ONLY or INCLUDE")),
        }
    }
}

impl Layout {
    /// One order for what has none (attributes, indexes), so a layout compares equal to itself
    /// read back.
    fn canonical(mut self) -> Self {
        // DynamoDB keeps only the attributes some key uses (an index's go with it; moto keeps
        // them): what no key uses is no part of the table.
        let used: Vec<String> = self
            .key_schema
            .iter()
            .chain(self.global_secondary_indexes.iter().flat_map(|g| g.key_schema.iter()))
            .map(|k| k.attribute_name.clone())
            .collect();
        self.attribute_definitions.retain(|a| used.contains(&a.attribute_name));
        self.attribute_definitions.sort_by(|a, b| a.attribute_name.cmp(&b.attribute_name));
        self.global_secondary_indexes.sort_by(|a, b| a.index_name.cmp(&b.index_name));
        for g in &mut self.global_secondary_indexes {
            g.projection.non_key_attributes.sort();
        }
        self
    }

    /// What is wrong with it as a table layout, if anything.
    fn problem(&self) -> Option<String> {
        let hash = self.key_schema.iter().filter(|k| k.key_type == "HASH").count();
        if hash != 1
            || self.key_schema.len() > 2
            || self.key_schema.iter().any(|k| !matches!(k.key_type.as_str(), "HASH" | "RANGE"))
        {
            return Some("KeySchema needs one HASH key and at most one RANGE key".into());
        }
        if let Some(a) =
            self.attribute_definitions.iter().find(|a| !matches!(a.attribute_type.as_str(), "S" | "N" | "B"))
        {
            return Some(format!(
                "attribute `{}` has type {:?}; DynamoDB keys are S, N or B",
                a.attribute_name, a.attribute_type
            ));
        }
        let defined: Vec<&str> = self.attribute_definitions.iter().map(|a| a.attribute_name.as_str()).collect();
        let keys: Vec<&str> = self
            .key_schema
            .iter()
            .chain(self.global_secondary_indexes.iter().flat_map(|g| g.key_schema.iter()))
            .map(|k| k.attribute_name.as_str())
            .collect();
        if let Some(k) = keys.iter().find(|k| !defined.contains(k)) {
            return Some(format!("key attribute `{k}` is not in AttributeDefinitions"));
        }
        if let Some(a) = defined.iter().find(|a| !keys.contains(a)) {
            return Some(format!("`{a}` is defined but no key uses it (DynamoDB refuses that)"));
        }
        let mut names: Vec<&str> = self.global_secondary_indexes.iter().map(|g| g.index_name.as_str()).collect();
        names.sort();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Some("two indexes share a name".into());
        }
        self.global_secondary_indexes.iter().find_map(|g| g.projection.problem(&g.index_name))
    }
}

const DYNAMODB_READS: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "dynamodb_reads",
    unit: "read request units a month",
    doc: "reads of each table (a 4 KB strongly consistent read is one unit)",
};
const DYNAMODB_WRITES: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "dynamodb_writes",
    unit: "write request units a month",
    doc: "writes to each table (1 KB each); every index and replica writes them again",
};
const DYNAMODB_STORAGE_GB: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "dynamodb_storage_gb",
    unit: "GB",
    doc: "items stored in each table; every index projecting all attributes and every replica stores them again",
};

/// On-demand: reads, writes (once more per global secondary index), storage (again per index),
/// continuous backups, and for each replica its replicated writes, its index writes, its
/// storage and its continuous backups, priced in the replica's region. 25 GB of storage are free.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::{parts::millions, Part};
    let Some(a) = cx.attrs::<Attrs>() else { return Vec::new() };
    let indexes = a.layout.global_secondary_indexes.len() as f64;
    let (reads, writes, gb) = (cx.usage(&DYNAMODB_READS), cx.usage(&DYNAMODB_WRITES), cx.usage(&DYNAMODB_STORAGE_GB));
    let stored = gb * (1.0 + indexes);
    let mut out = vec![
        Part::new(
            format!("writes (table and {indexes} indexes)"),
            "dynamodb.write",
            millions(writes * (1.0 + indexes)),
        ),
        Part::new("reads", "dynamodb.read", millions(reads)),
        Part::new("storage", "dynamodb.storage", stored),
    ];
    if a.point_in_time_recovery {
        out.push(Part::new("point-in-time recovery", "dynamodb.pitr", stored));
    }
    for r in &a.replicas {
        out.push(
            Part::new(format!("replicated writes to {r}"), "dynamodb.replicated_write", millions(writes)).in_region(r),
        );
        if indexes > 0.0 {
            out.push(
                Part::new(format!("index writes in {r}"), "dynamodb.write", millions(writes * indexes)).in_region(r),
            );
        }
        out.push(Part::new(format!("storage in {r}"), "dynamodb.storage", stored).in_region(r));
        if a.point_in_time_recovery {
            out.push(Part::new(format!("point-in-time recovery in {r}"), "dynamodb.pitr", stored).in_region(r));
        }
    }
    out
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    layout: Layout,
    ttl_attribute: Option<String>,
    #[serde(default)]
    point_in_time_recovery: bool,
    #[serde(default)]
    deletion_protection: bool,
    stream: Option<String>,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    replicas: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    fn stream(&self) -> Option<&str> {
        self.stream.as_deref().filter(|s| *s != "none")
    }
}

fn normalize(v: &mut Value) {
    if let Some(l) = v.get("layout").and_then(|l| serde_json::from_value::<Layout>(l.clone()).ok()) {
        v["layout"] = serde_json::to_value(l.canonical()).unwrap_or(Value::Null);
    }
    if v.get("stream").is_none_or(Value::is_null) {
        v["stream"] = json!("none");
    }
    // No replicas is an empty list, and replicas have no order.
    let mut replicas: Vec<String> = v
        .get("replicas")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    replicas.sort();
    v["replicas"] = json!(replicas);
}

impl Layout {
    /// The table's own key with its attributes' types: what only a new table can change.
    fn table_key(&self) -> Vec<(&str, &str, Option<&str>)> {
        let ty = |n: &str| {
            self.attribute_definitions.iter().find(|a| a.attribute_name == n).map(|a| a.attribute_type.as_str())
        };
        self.key_schema
            .iter()
            .map(|k| (k.attribute_name.as_str(), k.key_type.as_str(), ty(&k.attribute_name)))
            .collect()
    }
}

/// Brings the table's indexes from `have` to `want` in place: each removed or changed index
/// deleted, each new or changed one created, one UpdateTable at a time (DynamoDB takes one
/// index change per call and none while another is in progress), each waited for.
async fn set_indexes(cx: &Cx, name: &str, have: &Layout, want: &Layout) -> Result<(), OpError> {
    for gone in have.global_secondary_indexes.iter().filter(|g| !want.global_secondary_indexes.contains(g)) {
        let update = GlobalSecondaryIndexUpdate::builder()
            .delete(
                DeleteGlobalSecondaryIndexAction::builder()
                    .index_name(&gone.index_name)
                    .build()
                    .map_err(|e| OpError::fatal("UpdateTable", e.to_string()))?,
            )
            .build();
        ddb(cx)
            .update_table()
            .table_name(name)
            .global_secondary_index_updates(update)
            .send()
            .await
            .map_err(|e| err("UpdateTable", e))?;
        settle(cx, name).await?;
    }
    for new in want.global_secondary_indexes.iter().filter(|g| !have.global_secondary_indexes.contains(g)) {
        let mut b =
            CreateGlobalSecondaryIndexAction::builder().index_name(&new.index_name).projection(new.projection.sdk());
        for k in &new.key_schema {
            b = b.key_schema(key(k)?);
        }
        let create = b.build().map_err(|e| OpError::fatal("UpdateTable", e.to_string()))?;
        // Every key attribute of the layout: AWS adds the new index's to the table's, and
        // moto replaces the table's with what is sent.
        let attrs = attribute_definitions(want, "UpdateTable")?;
        ddb(cx)
            .update_table()
            .table_name(name)
            .set_attribute_definitions(Some(attrs))
            .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(create).build())
            .send()
            .await
            .map_err(|e| err("UpdateTable", e))?;
        settle(cx, name).await?;
    }
    Ok(())
}

/// The layout's attribute definitions as `op` sends them.
fn attribute_definitions(l: &Layout, op: &str) -> Result<Vec<AttributeDefinition>, OpError> {
    l.attribute_definitions
        .iter()
        .map(|a| {
            AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()
                .map_err(|e| OpError::fatal(op, e.to_string()))
        })
        .collect()
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    if let Some((Val::List(replicas), span)) = r.fields.get("replicas") {
        let home = stack.region_of(r);
        let mut seen = Vec::new();
        for (v, s) in replicas {
            let Val::Str(region) = v else { continue };
            if region == home {
                d.error(
                    "bad-replica",
                    s.clone(),
                    format!("{} lives in {home}: a replica there is the table itself", r.address()),
                    Some("list only other regions".into()),
                );
            } else if seen.contains(&region) {
                d.error("bad-replica", s.clone(), format!("{} lists {region} twice", r.address()), None);
            }
            seen.push(region);
        }
        let stream = r.fields.get("stream").and_then(|(v, _)| v.as_str());
        if !replicas.is_empty() && stream != Some("NEW_AND_OLD_IMAGES") {
            d.error(
                "replicas-need-stream",
                span.clone(),
                format!("{} has replicas, which replicate through a NEW_AND_OLD_IMAGES stream", r.address()),
                Some("add stream = \"NEW_AND_OLD_IMAGES\"".into()),
            );
        }
    }
    let Some((Val::Json(j), span)) = r.fields.get("layout") else { return };
    let problem = match serde_json::from_value::<Layout>(j.clone()) {
        Ok(l) => l.problem(),
        Err(e) => Some(e.to_string()),
    };
    if let Some(p) = problem {
        d.error(
            "bad-layout",
            span.clone(),
            format!("{}.layout: {p}", r.address()),
            Some("write KeySchema, AttributeDefinitions and GlobalSecondaryIndexes as CreateTable takes them".into()),
        );
    }
}

struct Table;

/// How long DynamoDB may take to create or delete a table (seconds, usually).
const WAIT: Duration = Duration::from_secs(10 * 60);

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
    stream_arn: Option<String>,
}

fn key(k: &Key) -> Result<KeySchemaElement, OpError> {
    KeySchemaElement::builder()
        .attribute_name(&k.attribute_name)
        .key_type(KeyType::from(k.key_type.as_str()))
        .build()
        .map_err(|e| OpError::fatal("CreateTable", e.to_string()))
}

fn stream_spec(view: Option<&str>) -> Result<StreamSpecification, OpError> {
    let b = StreamSpecification::builder().stream_enabled(view.is_some());
    let b = match view {
        Some(v) => b.stream_view_type(StreamViewType::from(v)),
        None => b,
    };
    b.build().map_err(|e| OpError::fatal("StreamSpecification", e.to_string()))
}

fn tags(m: &BTreeMap<String, String>) -> Result<Vec<Tag>, OpError> {
    m.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| OpError::fatal("Tag", e.to_string())))
        .collect()
}

async fn set_ttl(cx: &Cx, name: &str, attribute: &str, on: bool) -> Result<(), OpError> {
    let spec = TimeToLiveSpecification::builder()
        .enabled(on)
        .attribute_name(attribute)
        .build()
        .map_err(|e| OpError::fatal("UpdateTimeToLive", e.to_string()))?;
    ddb(cx)
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| err("UpdateTimeToLive", e))?;
    Ok(())
}

/// Whether the table `name` in `cx.region` has point-in-time recovery on.
async fn pitr_of(cx: &Cx, name: &str) -> Result<bool, OpError> {
    let backups = ddb(cx)
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .map_err(|e| err("DescribeContinuousBackups", e))?;
    Ok(backups
        .continuous_backups_description()
        .and_then(|c| c.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .is_some_and(|s| s.as_str() == "ENABLED"))
}

async fn set_pitr(cx: &Cx, name: &str, on: bool) -> Result<(), OpError> {
    let spec = PointInTimeRecoverySpecification::builder()
        .point_in_time_recovery_enabled(on)
        .build()
        .map_err(|e| OpError::fatal("UpdateContinuousBackups", e.to_string()))?;
    ddb(cx)
        .update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(spec)
        .send()
        .await
        .map_err(|e| err("UpdateContinuousBackups", e))?;
    Ok(())
}

/// Adds or removes the replica in `region` (one replica change per call, as DynamoDB takes
/// them) and waits until the table and its replicas are active again.
async fn replica(cx: &Cx, name: &str, region: &str, add: bool) -> Result<(), OpError> {
    let bad = |e: aws_sdk_dynamodb::error::BuildError| OpError::fatal("UpdateTable", e.to_string());
    let update = if add {
        ReplicationGroupUpdate::builder()
            .create(CreateReplicationGroupMemberAction::builder().region_name(region).build().map_err(bad)?)
    } else {
        ReplicationGroupUpdate::builder()
            .delete(DeleteReplicationGroupMemberAction::builder().region_name(region).build().map_err(bad)?)
    }
    .build();
    let sent =
        ddb(cx).update_table().table_name(name).replica_updates(update).send().await.map_err(|e| err("UpdateTable", e));
    match sent {
        // Removing a replica that is gone already.
        Err(e) if !add && e.is_not_found() => {}
        other => {
            other?;
        }
    }
    settle(cx, name).await
}

/// Waits until the table, every replica (minutes in AWS) and every index (built, or gone) are
/// `ACTIVE`.
async fn settle(cx: &Cx, name: &str) -> Result<(), OpError> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let out = ddb(cx).describe_table().table_name(name).send().await.map_err(|e| err("DescribeTable", e))?;
        let t = out.table();
        let table_ready = t.and_then(|t| t.table_status()) == Some(&TableStatus::Active);
        let replicas = t.map(|t| t.replicas()).unwrap_or_default();
        let indexes = t.map(|t| t.global_secondary_indexes()).unwrap_or_default();
        let pending: Vec<String> = replicas
            .iter()
            .filter(|r| r.replica_status() != Some(&ReplicaStatus::Active))
            .filter_map(|r| r.region_name().map(str::to_owned))
            .chain(
                indexes
                    .iter()
                    .filter(|g| g.index_status() != Some(&IndexStatus::Active))
                    .filter_map(|g| g.index_name().map(str::to_owned)),
            )
            .collect();
        if table_ready && pending.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(OpError::retryable("wait TableActive", format!("{name}: not active yet: {pending:?}")));
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// One table as declared, or `None` when it is not this stack's (a prefix is not ownership).
async fn read(cx: &Cx, name: &str) -> Result<Option<Found<Attrs, Outputs>>, OpError> {
    let client = ddb(cx);
    let out = client.describe_table().table_name(name).send().await.map_err(|e| err("DescribeTable", e))?;
    let Some(t) = out.table() else { return Ok(None) };
    let Some(arn) = t.table_arn() else { return Ok(None) };
    let tag_list =
        client.list_tags_of_resource().resource_arn(arn).send().await.map_err(|e| err("ListTagsOfResource", e))?;
    let tags: BTreeMap<String, String> =
        tag_list.tags().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect();
    if tags.get(STACK_TAG) != Some(&cx.stack) {
        return Ok(None);
    }
    let ttl = client.describe_time_to_live().table_name(name).send().await.map_err(|e| err("DescribeTimeToLive", e))?;
    let ttl = ttl
        .time_to_live_description()
        .filter(|d| matches!(d.time_to_live_status(), Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)))
        .and_then(|d| d.attribute_name());
    // Recovery is on only where every copy has it: the table and each replica (a replica is a
    // table of its own region, with its own continuous backups).
    let mut pitr = pitr_of(cx, name).await?;
    for region in t.replicas().iter().filter_map(|r| r.region_name()) {
        if !pitr {
            break;
        }
        pitr = pitr_of(&cx.in_region(region), name).await?;
    }
    let keys = |k: &[KeySchemaElement]| -> Vec<Key> {
        k.iter()
            .map(|k| Key { attribute_name: k.attribute_name().to_owned(), key_type: k.key_type().as_str().to_owned() })
            .collect()
    };
    let layout = Layout {
        key_schema: keys(t.key_schema()),
        attribute_definitions: t
            .attribute_definitions()
            .iter()
            .map(|a| Attribute {
                attribute_name: a.attribute_name().to_owned(),
                attribute_type: a.attribute_type().as_str().to_owned(),
            })
            .collect(),
        global_secondary_indexes: t
            .global_secondary_indexes()
            .iter()
            .map(|g| Index {
                index_name: g.index_name().unwrap_or_default().to_owned(),
                key_schema: keys(g.key_schema()),
                projection: Projected {
                    projection_type: g
                        .projection()
                        .and_then(|p| p.projection_type())
                        .map_or("ALL", |p| p.as_str())
                        .to_owned(),
                    non_key_attributes: g.projection().map(|p| p.non_key_attributes().to_vec()).unwrap_or_default(),
                },
            })
            .collect(),
    }
    .canonical();
    let stream = t
        .stream_specification()
        .filter(|s| s.stream_enabled())
        .and_then(|s| s.stream_view_type())
        .map_or("none", |v| v.as_str());
    let mut replicas: Vec<String> = t.replicas().iter().filter_map(|r| r.region_name().map(str::to_owned)).collect();
    replicas.sort();
    let address = Address::found(&tags, KIND.name, name.trim_start_matches(&format!("{}-", cx.stack)));
    let outputs =
        Outputs { name: name.to_owned(), arn: arn.to_owned(), stream_arn: t.latest_stream_arn().map(str::to_owned) };
    let attrs = Attrs {
        layout,
        ttl_attribute: ttl.map(str::to_owned),
        point_in_time_recovery: pitr,
        deletion_protection: t.deletion_protection_enabled().unwrap_or(false),
        stream: Some(stream.to_owned()),
        replicas,
        tags,
    };
    Ok(Some(Found { id: name.to_owned(), address, attrs, outputs }))
}

#[async_trait]
impl Typed for Table {
    type Attrs = Attrs;
    type Outputs = Outputs;

    fn forces(&self, have: &Attrs, want: &Attrs) -> Vec<&'static str> {
        if have.layout.table_key() != want.layout.table_key() {
            vec!["layout"]
        } else {
            Vec::new()
        }
    }
    fn refuse(&self, have: &Attrs, want: &Attrs) -> Option<String> {
        match (&have.ttl_attribute, &want.ttl_attribute) {
            (Some(h), Some(w)) if h != w => Some(format!(
                "renaming the TTL attribute (`{h}` to `{w}`) is two TTL changes, and DynamoDB refuses a second within \
                 an hour of the first: remove `ttl_attribute` and apply, then set it to `{w}` and apply an hour later"
            )),
            _ => None,
        }
    }
    fn protected(&self, have: &Attrs) -> Option<&'static str> {
        crate::provider::deletion_protected(Some(have.deletion_protection))
    }
    fn example(&self, field: &str) -> Option<Value> {
        (field == "layout").then(|| {
            json!({
                "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
                "AttributeDefinitions": [{"AttributeName": "id", "AttributeType": "S"}],
                "GlobalSecondaryIndexes": [],
            })
        })
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let prefix = format!("{}-", cx.stack);
        let mut names = Vec::new();
        let mut pages = ddb(cx).list_tables().into_paginator().send();
        while let Some(page) = pages.next().await {
            names.extend(
                page.map_err(|e| err("ListTables", e))?
                    .table_names()
                    .iter()
                    .filter(|n| n.starts_with(&prefix))
                    .cloned(),
            );
        }
        let mut out = Vec::new();
        for name in names {
            match read(cx, &name).await {
                Ok(Some(l)) => out.push(l),
                Ok(None) => {}
                // Deleted between the list and the read.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
        let l = &w.layout;
        let mut indexes = Vec::new();
        for g in &l.global_secondary_indexes {
            let mut b = GlobalSecondaryIndex::builder().index_name(&g.index_name).projection(g.projection.sdk());
            for k in &g.key_schema {
                b = b.key_schema(key(k)?);
            }
            indexes.push(b.build().map_err(|e| OpError::fatal("CreateTable", e.to_string()))?);
        }
        let attrs = attribute_definitions(l, "CreateTable")?;
        let made = ddb(cx)
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(l.key_schema.iter().map(key).collect::<Result<_, _>>()?))
            .set_attribute_definitions(Some(attrs))
            .set_global_secondary_indexes((!indexes.is_empty()).then_some(indexes))
            .deletion_protection_enabled(w.deletion_protection)
            .set_stream_specification(w.stream().map(|v| stream_spec(Some(v))).transpose()?)
            .set_tags(Some(tags(&w.tags)?))
            .send()
            .await
            .map_err(|e| err("CreateTable", e));
        match made {
            // The name is the idempotency key: a rerun after a crash finds its own table.
            Err(e) if e.has_code("ResourceInUseException") => {}
            other => {
                other?;
            }
        }
        ddb(cx)
            .wait_until_table_exists()
            .table_name(&name)
            .wait(WAIT)
            .await
            .map_err(|e| OpError::retryable("wait TableExists", format!("{name}: {e}")))?;
        // A rerun continues from the replicas the table already has.
        let out = ddb(cx).describe_table().table_name(&name).send().await.map_err(|e| err("DescribeTable", e))?;
        let replicas = out
            .table()
            .map(|t| t.replicas())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_owned))
            .collect();
        // As CreateTable leaves it: no TTL, no point-in-time recovery; the update sets them.
        let fresh = Attrs { ttl_attribute: None, point_in_time_recovery: false, replicas, ..w.clone() };
        cx.born(&name, &fresh);
        Typed::update(self, cx, &name, Some(&fresh), w).await?;
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        // A stream's view type cannot change while it is on: off first, then on with the new one.
        if h.stream().is_some() && w.stream().is_some() && h.stream() != w.stream() {
            ddb(cx)
                .update_table()
                .table_name(id)
                .stream_specification(stream_spec(None)?)
                .send()
                .await
                .map_err(|e| err("UpdateTable", e))?;
            ddb(cx)
                .wait_until_table_exists()
                .table_name(id)
                .wait(WAIT)
                .await
                .map_err(|e| OpError::retryable("wait TableExists", format!("{id}: {e}")))?;
        }
        if h.deletion_protection != w.deletion_protection || h.stream() != w.stream() {
            let mut call = ddb(cx).update_table().table_name(id);
            if h.deletion_protection != w.deletion_protection {
                call = call.deletion_protection_enabled(w.deletion_protection);
            }
            if h.stream() != w.stream() {
                call = call.stream_specification(stream_spec(w.stream())?);
            }
            call.send().await.map_err(|e| err("UpdateTable", e))?;
        }
        set_indexes(cx, id, &h.layout, &w.layout).await?;
        if h.ttl_attribute != w.ttl_attribute {
            if let Some(old) = &h.ttl_attribute {
                set_ttl(cx, id, old, false).await?;
            }
            if let Some(new) = &w.ttl_attribute {
                set_ttl(cx, id, new, true).await?;
            }
        }
        for region in w.replicas.iter().filter(|r| !h.replicas.contains(r)) {
            replica(cx, id, region, true).await?;
        }
        for region in h.replicas.iter().filter(|r| !w.replicas.contains(r)) {
            replica(cx, id, region, false).await?;
        }
        // The table and every replica alike (a new replica starts without recovery).
        let new_replica = w.replicas.iter().any(|r| !h.replicas.contains(r));
        if h.point_in_time_recovery != w.point_in_time_recovery || (w.point_in_time_recovery && new_replica) {
            set_pitr(cx, id, w.point_in_time_recovery).await?;
            for region in &w.replicas {
                set_pitr(&cx.in_region(region), id, w.point_in_time_recovery).await?;
            }
        }
        let (gone, changed) = tag_changes(&h.tags, &w.tags);
        if !gone.is_empty() || !changed.is_empty() {
            let out = ddb(cx).describe_table().table_name(id).send().await.map_err(|e| err("DescribeTable", e))?;
            let arn = out.table().and_then(|t| t.table_arn()).unwrap_or_default().to_owned();
            if !gone.is_empty() {
                ddb(cx)
                    .untag_resource()
                    .resource_arn(&arn)
                    .set_tag_keys(Some(gone))
                    .send()
                    .await
                    .map_err(|e| err("UntagResource", e))?;
            }
            if !changed.is_empty() {
                ddb(cx)
                    .tag_resource()
                    .resource_arn(&arn)
                    .set_tags(Some(tags(&changed)?))
                    .send()
                    .await
                    .map_err(|e| err("TagResource", e))?;
            }
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // A global table goes replica by replica, then the table itself.
        let replicas = have.map(|h| h.replicas.clone()).unwrap_or_default();
        for region in &replicas {
            replica(cx, id, region, false).await?;
        }
        gone_ok(ddb(cx).delete_table().table_name(id).send().await.map_err(|e| err("DeleteTable", e)))?;
        ddb(cx)
            .wait_until_table_not_exists()
            .table_name(id)
            .wait(WAIT)
            .await
            .map_err(|e| OpError::retryable("wait TableNotExists", format!("{id}: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services_layout() -> Value {
        serde_json::from_str(include_str!("../../../../services/src/store/table.json")).unwrap()
    }

    #[test]
    fn the_services_layout_is_valid_and_canonical_in_any_order() {
        let l: Layout = serde_json::from_value(services_layout()).unwrap();
        assert_eq!(l.problem(), None);
        let mut shuffled = l.clone();
        shuffled.attribute_definitions.reverse();
        shuffled.global_secondary_indexes.reverse();
        assert_eq!(shuffled.canonical(), l.clone().canonical());
        let mut unused = l.clone();
        unused.attribute_definitions.push(Attribute { attribute_name: "x".into(), attribute_type: "S".into() });
        assert!(unused.problem().unwrap().contains("no key uses it"));
        let mut two = l;
        two.key_schema.push(Key { attribute_name: "day".into(), key_type: "HASH".into() });
        assert!(two.problem().is_some());
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// The services' layout (2 indexes): writes x3 at $0.7625 a million, reads at $0.1525,
    /// storage x3 after 25 free GB at $0.306, backups at $0.2448; the eu-west-1 replica's
    /// replicated and index writes at $0.7063, its storage at $0.283 (the free tier used up)
    /// and its own backups at $0.22.
    #[test]
    fn on_demand_with_indexes_backups_and_a_replica() {
        let b = priced(
            "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[dynamodb_table.q]\nlayout = \"../services/src/store/table.json\"\npoint_in_time_recovery = true\nstream = \"NEW_AND_OLD_IMAGES\"\n\
             replicas = [\"eu-west-1\"]\n[usage]\ndynamodb_writes = 1000000\ndynamodb_reads = 2000000\ndynamodb_storage_gb = 10\n",
        );
        let want = 3.0 * 0.7625
            + 2.0 * 0.1525
            + 5.0 * 0.306
            + 30.0 * 0.2448
            + 0.7063
            + 2.0 * 0.7063
            + 30.0 * 0.283
            + 30.0 * 0.22;
        close(of(&b, "dynamodb_table.q").monthly, want);
    }

    #[test]
    fn index_projections_are_checked_as_dynamodb_takes_them() {
        let p = |t: &str, n: usize| {
            let non_key_attributes = (0..n).map(|i| format!("a{i}")).collect();
            super::Projected { projection_type: t.into(), non_key_attributes }.problem("i")
        };
        assert!(p("ALL", 0).is_none() && p("KEYS_ONLY", 0).is_none() && p("INCLUDE", 1).is_none());
        assert!(p("INCLUDE", 20).is_none());
        assert!(p("INCLUDE", 0).unwrap().contains("1 to 20"), "{:?}", p("INCLUDE", 0));
        assert!(p("INCLUDE", 21).unwrap().contains("not 21"));
        assert!(p("ALL", 1).unwrap().contains("INCLUDE only"));
        assert!(p("SOME", 0).unwrap().contains("not ALL, KEYS_ONLY or INCLUDE"));
        // In a layout: the check runs with the others, and an unknown projection key is refused.
        let layout = |projection: &str| {
            format!(
                r#"{{"KeySchema": [{{"AttributeName": "k", "KeyType": "HASH"}}],
                   "AttributeDefinitions": [{{"AttributeName": "k", "AttributeType": "S"}}, {{"AttributeName": "g", "AttributeType": "S"}}],
                   "GlobalSecondaryIndexes": [{{"IndexName": "by_g", "KeySchema": [{{"AttributeName": "g", "KeyType": "HASH"}}], "Projection": {projection}}}]}}"#
            )
        };
        let read =
            |text: String| serde_json::from_str::<super::Layout>(&text).map_err(|e| e.to_string()).map(|l| l.problem());
        assert_eq!(read(layout(r#"{"ProjectionType": "INCLUDE", "NonKeyAttributes": ["mag"]}"#)), Ok(None));
        assert!(read(layout(r#"{"ProjectionType": "INCLUDE"}"#)).unwrap().unwrap().contains("by_g"));
        assert!(read(layout(r#"{"ProjectionType": "ALL", "NonKeyAtributes": ["x"]}"#)).is_err(), "a typo is refused");
    }
}
