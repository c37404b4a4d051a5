//! `s3_bucket_policy`: the one policy of a stack's bucket, written from two facts: which
//! CloudFront distributions may read its objects (through origin access control: the
//! `cloudfront.amazonaws.com` service, only on behalf of those distributions' ARNs) and that
//! nothing reaches it over plain HTTP (unless `https_only = false`). Nothing else can read it:
//! the bucket blocks public access.
//! A bucket policy has no tags: the document's `Id` names the stack and the address.

use super::{err, owned, s3};
use crate::error::{gone_ok, OpError};
use crate::provider::{address_in, marker, null_as_empty, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub static KIND: Kind = Kind::new("s3_bucket_policy", "A bucket's policy: objects readable by the named CloudFront distributions only (origin access control), HTTPS only.", &Policy)
.fields(&[
        Field::required("bucket", FieldType::Ref(&["s3_bucket"]), Update::Replace, "The bucket."),
        Field::required(
            "read_by",
            FieldType::List(&FieldType::String),
            Update::InPlace,
            "ARNs of the distributions that may read every object (\"${cloudfront_distribution.NAME.arn}\").",
        )
        .security(Security::Grants),
        Field::optional("https_only", FieldType::Bool, Some("true"), Update::InPlace, "Deny every request over plain HTTP.")
        .security(Security::Guard(crate::schema::turned_off)),
    ])
.outputs(&[("id", "The bucket's name")])
.normalize(normalize);

/// Distributions as a sorted set: their order in the document means nothing.
fn normalize(v: &mut Value) {
    if let Some(Value::Array(a)) = v.get_mut("read_by") {
        a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
        a.dedup();
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    bucket: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    read_by: Vec<String>,
    https_only: Option<bool>,
}

/// The document for `bucket`, marked with `address`.
fn document(cx: &Cx, address: &str, bucket: &str, read_by: &[String], https_only: bool) -> Value {
    let mut readers = read_by.to_vec();
    readers.sort();
    readers.dedup();
    let mut statements = vec![json!({
        "Sid": "CloudFrontReads",
        "Effect": "Allow",
        "Principal": { "Service": "cloudfront.amazonaws.com" },
        "Action": "s3:GetObject",
        "Resource": format!("arn:aws:s3:::{bucket}/*"),
        "Condition": { "StringEquals": { "AWS:SourceArn": readers } },
    })];
    if https_only {
        statements.push(json!({
            "Sid": "HttpsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": { "Bool": { "aws:SecureTransport": "false" } },
        }));
    }
    json!({ "Version": "2012-10-17", "Id": marker(cx, address), "Statement": statements })
}

/// The distributions a live document grants reads to and whether it denies plain HTTP, when it
/// is exactly what this kind writes for them (anything added or changed by hand reads as no
/// readers: a difference to repair).
fn readers_of(cx: &Cx, address: &str, bucket: &str, doc: &Value) -> (Vec<String>, bool) {
    let granted = &doc["Statement"][0]["Condition"]["StringEquals"]["AWS:SourceArn"];
    let mut read_by: Vec<String> = match granted {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    read_by.sort();
    let https_only = doc["Statement"].as_array().is_some_and(|s| s.len() == 2);
    if document(cx, address, bucket, &read_by, https_only) == normalized(doc) {
        (read_by, https_only)
    } else {
        (Vec::new(), false)
    }
}

/// A live document in the form [`document`] writes: AWS may answer a one-item list as its item.
fn normalized(doc: &Value) -> Value {
    let mut d = doc.clone();
    if let Some(Value::String(s)) = d.pointer("/Statement/0/Condition/StringEquals/AWS:SourceArn").cloned() {
        d["Statement"][0]["Condition"]["StringEquals"]["AWS:SourceArn"] = json!([s]);
    }
    d
}

async fn put(cx: &Cx, address: &str, w: &Attrs) -> Result<(), OpError> {
    s3(cx)
        .put_bucket_policy()
        .bucket(&w.bucket)
        .policy(document(cx, address, &w.bucket, &w.read_by, w.https_only.unwrap_or(true)).to_string())
        .send()
        .await
        .map_err(|e| err("PutBucketPolicy", e))?;
    Ok(())
}

struct Policy;

#[async_trait]
impl Typed for Policy {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        let mut out = Vec::new();
        for (bucket, _) in owned(cx).await? {
            let text =
                match s3(cx).get_bucket_policy().bucket(&bucket).send().await.map_err(|e| err("GetBucketPolicy", e)) {
                    Ok(p) => p.policy().unwrap_or_default().to_owned(),
                    Err(e) if e.is_not_found() || e.has_code("NoSuchBucketPolicy") => continue,
                    Err(e) => return Err(e),
                };
            let Ok(doc) = serde_json::from_str::<Value>(&text) else { continue };
            let Some(address) = doc["Id"].as_str().and_then(|id| address_in(cx, id)) else { continue };
            let (read_by, https_only) = readers_of(cx, &address, &bucket, &doc);
            let attrs = Attrs { bucket: bucket.clone(), read_by, https_only: Some(https_only) };
            out.push(Found { id: bucket, address, attrs, outputs: () });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        put(cx, &address.to_string(), want).await?;
        Ok(want.bucket.clone())
    }

    async fn update(&self, cx: &Cx, id: &str, _have: Option<&Attrs>, w: &Attrs) -> Result<(), OpError> {
        // The address is the policy's own: read it from the live document's mark.
        let live = s3(cx).get_bucket_policy().bucket(id).send().await.map_err(|e| err("GetBucketPolicy", e))?;
        let doc: Value = serde_json::from_str(live.policy().unwrap_or("{}")).unwrap_or(Value::Null);
        let address = doc["Id"]
            .as_str()
            .and_then(|i| address_in(cx, i))
            .ok_or_else(|| OpError::fatal("GetBucketPolicy", format!("the policy of {id} is not this stack's")))?;
        put(cx, &address, w).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _have: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(s3(cx).delete_bucket_policy().bucket(id).send().await.map_err(|e| err("DeleteBucketPolicy", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Cx {
        Cx::new(aws_config::SdkConfig::builder().build(), "t", "eu-central-1")
    }

    #[test]
    fn a_written_document_reads_back_and_a_changed_one_does_not() {
        let arns =
            vec!["arn:aws:cloudfront::1:distribution/B".to_owned(), "arn:aws:cloudfront::1:distribution/A".to_owned()];
        let doc = document(&cx(), "s3_bucket_policy.site", "t-site", &arns, true);
        let mut sorted = arns.clone();
        sorted.sort();
        assert_eq!(readers_of(&cx(), "s3_bucket_policy.site", "t-site", &doc), (sorted.clone(), true));
        let plain = document(&cx(), "s3_bucket_policy.site", "t-site", &arns, false);
        assert_eq!(readers_of(&cx(), "s3_bucket_policy.site", "t-site", &plain), (sorted, false));
        let one = document(&cx(), "s3_bucket_policy.site", "t-site", &arns[..1], true);
        let mut as_aws = one.clone();
        as_aws["Statement"][0]["Condition"]["StringEquals"]["AWS:SourceArn"] = json!(arns[0]);
        assert_eq!(
            readers_of(&cx(), "s3_bucket_policy.site", "t-site", &as_aws).0,
            arns[..1].to_vec(),
            "a one-item list as a string"
        );
        let mut opened = doc.clone();
        opened["Statement"][0]["Principal"] = json!("*");
        assert!(
            readers_of(&cx(), "s3_bucket_policy.site", "t-site", &opened).0.is_empty(),
            "a hand-made change is a difference"
        );
    }
}
