//! `s3_bucket`: a private bucket named `<stack>-<name>` (lowercase, `_` as `-`): every kind of
//! public access blocked, objects encrypted at rest (SSE-S3) and owned by the account (no
//! ACLs), versioning optional. A bucket that still holds objects is deleted only with
//! `force_destroy`, which empties it first (every version).

use super::{delete_objects, err, owned, s3};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, Address, Cx, Found, Typed, ID_TAG};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, ObjectIdentifier, ObjectOwnership,
    OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new("s3_bucket", "A private S3 bucket (<stack>-<name>): public access blocked, SSE-S3 encryption, no ACLs, versioning optional.", &Bucket)
.fields(&[
        Field::optional("versioning", FieldType::Bool, Some("false"), Update::InPlace, "Keep every version of every object."),
        Field::optional(
            "force_destroy",
            FieldType::Bool,
            Some("false"),
            Update::InPlace,
            "On destroy, delete the objects it still holds (every version) first; otherwise a bucket with objects is left and the destroy fails. Kept on the bucket (a tag), so a destroy knows it without the stack file.",
        ),
        TAGS,
    ])
.outputs(&[
        ("id", "The bucket's name"),
        ("name", "<stack>-<name>"),
        ("arn", "arn:aws:s3:::<name>"),
        ("regional_domain", "<name>.s3.<region>.amazonaws.com (a CloudFront origin)"),
    ])
.check(check)
.cost(cost, &[S3_STORAGE_GB, S3_GETS])
.global_name();

const S3_STORAGE_GB: crate::cost::UsageKey =
    crate::cost::UsageKey { name: "s3_storage_gb", unit: "GB", doc: "data each bucket stores (every version kept)" };
const S3_GETS: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "s3_gets",
    unit: "requests a month",
    doc: "GET requests to each bucket (a CDN's cache misses)",
};

/// Standard storage and GET requests.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::{parts::millions, Part};
    vec![
        Part::new("storage (standard)", "s3.storage", cx.usage(&S3_STORAGE_GB)),
        Part::new("GET requests", "s3.get", millions(cx.usage(&S3_GETS))),
    ]
}

/// The stem of the bucket's name, from the stack's and the resource's; the bucket is asked for
/// with the account's suffix (`kinds::account`): bucket names are global across AWS.
pub fn bucket_name(stack: &str, name: &str) -> String {
    format!("{stack}-{name}").to_ascii_lowercase().replace('_', "-")
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    let name = bucket_name(&stack.name, &r.name);
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    if !(3..=63 - crate::kinds::account::SUFFIX_LEN).contains(&name.len()) || !ok_chars || name.ends_with('-') {
        d.error(
            "bad-bucket-name",
            r.span.clone(),
            format!("{}: its bucket would be named `{name}-<account suffix>`, which S3 does not allow", r.address()),
            Some("S3 names are 3 to 63 lowercase letters, digits, `-` and `.` (7 go to the account's suffix): shorten the stack or resource name".into()),
        );
    }
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    #[serde(default)]
    versioning: bool,
    #[serde(default)]
    force_destroy: bool,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Default, Serialize)]
struct Outputs {
    name: String,
    arn: String,
    regional_domain: String,
}

/// Where `force_destroy` is kept: on the bucket, because a destroy has no stack file to read.
const FORCE_TAG: &str = "provisioner:force-destroy";

/// The bucket's tags: the resource's, and the force-destroy mark when set.
fn tagging(w: &Attrs) -> Result<Tagging, OpError> {
    let mut tags = w.tags.clone();
    if w.force_destroy {
        tags.insert(FORCE_TAG.to_owned(), "true".to_owned());
    }
    let set = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| OpError::fatal("Tag", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Tagging::builder().set_tag_set(Some(set)).build().map_err(|e| OpError::fatal("Tagging", e.to_string()))
}

/// Sets the bucket's whole tag set (S3 has no per-tag call).
async fn put_tags(cx: &Cx, bucket: &str, w: &Attrs) -> Result<(), OpError> {
    s3(cx)
        .put_bucket_tagging()
        .bucket(bucket)
        .tagging(tagging(w)?)
        .send()
        .await
        .map_err(|e| err("PutBucketTagging", e))?;
    Ok(())
}

async fn set_versioning(cx: &Cx, bucket: &str, on: bool) -> Result<(), OpError> {
    let status = if on { BucketVersioningStatus::Enabled } else { BucketVersioningStatus::Suspended };
    s3(cx)
        .put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(VersioningConfiguration::builder().status(status).build())
        .send()
        .await
        .map_err(|e| err("PutBucketVersioning", e))?;
    Ok(())
}

/// Deletes every object version and delete marker, a thousand a call.
async fn empty(cx: &Cx, bucket: &str) -> Result<(), OpError> {
    loop {
        let page =
            s3(cx).list_object_versions().bucket(bucket).send().await.map_err(|e| err("ListObjectVersions", e))?;
        let ids = page
            .versions()
            .iter()
            .map(|v| (v.key(), v.version_id()))
            .chain(page.delete_markers().iter().map(|m| (m.key(), m.version_id())))
            .filter_map(|(k, v)| {
                ObjectIdentifier::builder()
                    .set_key(k.map(str::to_owned))
                    .set_version_id(v.map(str::to_owned))
                    .build()
                    .ok()
            })
            .collect::<Vec<_>>();
        if ids.is_empty() {
            return Ok(());
        }
        delete_objects(cx, bucket, ids).await?;
    }
}

struct Bucket;

#[async_trait]
impl Typed for Bucket {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let mut out = Vec::new();
        for (name, mut tags) in owned(cx).await? {
            let force = tags.remove(FORCE_TAG).is_some_and(|v| v == "true");
            let Some(address) = tags.get(ID_TAG).cloned() else { continue };
            let v =
                s3(cx).get_bucket_versioning().bucket(&name).send().await.map_err(|e| err("GetBucketVersioning", e))?;
            let outputs = Outputs {
                arn: format!("arn:aws:s3:::{name}"),
                regional_domain: format!("{name}.s3.{}.amazonaws.com", cx.region),
                name: name.clone(),
            };
            let versioning = v.status() == Some(&BucketVersioningStatus::Enabled);
            out.push(Found { id: name, address, attrs: Attrs { versioning, force_destroy: force, tags }, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let stem = bucket_name(&cx.stack, address.name());
        let name = crate::kinds::account::global(&stem, &crate::kinds::account::global_suffix(cx).await?);
        let mut create = s3(cx).create_bucket().bucket(&name).object_ownership(ObjectOwnership::BucketOwnerEnforced);
        if cx.region != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(cx.region.as_str()))
                    .build(),
            );
        }
        match create.send().await.map_err(|e| err("CreateBucket", e)) {
            Ok(_) => {}
            // A rerun after a crash: the bucket is ours already (another account's name answers
            // BucketAlreadyExists, which stays an error).
            Err(e) if e.has_code("BucketAlreadyOwnedByYou") => {}
            Err(e) => return Err(e),
        }
        // Tags first: a crash after this point leaves a bucket discovery finds.
        put_tags(cx, &name, w).await?;
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        s3(cx)
            .put_public_access_block()
            .bucket(&name)
            .public_access_block_configuration(block)
            .send()
            .await
            .map_err(|e| err("PutPublicAccessBlock", e))?;
        let sse = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(
                        ServerSideEncryptionByDefault::builder()
                            .sse_algorithm(ServerSideEncryption::Aes256)
                            .build()
                            .map_err(|e| OpError::fatal("ServerSideEncryptionByDefault", e.to_string()))?,
                    )
                    .build(),
            )
            .build()
            .map_err(|e| OpError::fatal("ServerSideEncryptionConfiguration", e.to_string()))?;
        s3(cx)
            .put_bucket_encryption()
            .bucket(&name)
            .server_side_encryption_configuration(sse)
            .send()
            .await
            .map_err(|e| err("PutBucketEncryption", e))?;
        let owner = OwnershipControls::builder()
            .rules(
                OwnershipControlsRule::builder()
                    .object_ownership(ObjectOwnership::BucketOwnerEnforced)
                    .build()
                    .map_err(|e| OpError::fatal("OwnershipControlsRule", e.to_string()))?,
            )
            .build()
            .map_err(|e| OpError::fatal("OwnershipControls", e.to_string()))?;
        s3(cx)
            .put_bucket_ownership_controls()
            .bucket(&name)
            .ownership_controls(owner)
            .send()
            .await
            .map_err(|e| err("PutBucketOwnershipControls", e))?;
        if w.versioning {
            set_versioning(cx, &name, true).await?;
        }
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if h.versioning != w.versioning {
            // S3 cannot turn versioning off, only suspend it: what is kept stays.
            set_versioning(cx, id, w.versioning).await?;
        }
        if h.tags != w.tags || h.force_destroy != w.force_destroy {
            put_tags(cx, id, w).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        if have.is_some_and(|a| a.force_destroy) {
            gone_ok(empty(cx, id).await)?;
        }
        match s3(cx).delete_bucket().bucket(id).send().await.map_err(|e| err("DeleteBucket", e)) {
            Err(e) if e.has_code("BucketNotEmpty") => Err(OpError::fatal(
                "DeleteBucket",
                format!("{id} still holds objects: set force_destroy = true on it to delete them with the bucket, or empty it"),
            )),
            other => gone_ok(other.map(|_| ())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::test_support::{close, of, priced};

    #[test]
    fn names_are_lowercase_and_checked() {
        assert_eq!(bucket_name("Quake-prod", "finops_site"), "quake-prod-finops-site");
        let src = |name: &str| format!("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[s3_bucket.{name}]\n");
        // `t-` and the account's suffix (7) around it: 54 characters fit in S3's 63 ...
        let long = "x".repeat(54);
        assert!(
            crate::stack::parse(crate::kinds::all(), "t.toml", &src(&long), &BTreeMap::new()).is_ok(),
            "63 characters"
        );
        // ... and 56 do not.
        let d = crate::stack::parse(crate::kinds::all(), "t.toml", &src(&"x".repeat(55)), &BTreeMap::new());
        assert!(d.unwrap_err().items.iter().any(|i| i.code == "bad-bucket-name"), "64 characters");
    }

    /// eu-central-1: $0.0245 a GB-month, $0.43 a million GETs.
    #[test]
    fn storage_and_gets() {
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[s3_bucket.site]\n[usage]\ns3_storage_gb = 2\ns3_gets = 500000\n");
        close(of(&b, "s3_bucket.site").monthly, 2.0 * 0.0245 + 0.5 * 0.43);
    }
}
