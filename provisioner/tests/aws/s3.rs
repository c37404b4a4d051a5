//! S3: a private bucket.

use super::*;

/// A private bucket in a region of its own (us-east-1 is the one without a location
/// constraint): every public access blocked, encrypted, owned by the account, tagged; planned
/// empty after; versioning switched on in place; a destroy refused while it holds objects and
/// done, objects and versions first, with `force_destroy`; a bucket of another stack with the
/// same prefix left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_bucket() {
    let moto = Moto::start().await;
    // moto's answer to GetBucketVersioning of a new bucket is EMULATED as S3's (see `common`).
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    // Bucket names are global across AWS: asked for with the account's suffix.
    let bucket = |stem: &str| format!("{stem}-{}", provisioner::kinds::account::suffix_of("123456789012"));
    let (site, east) = (bucket("bk-site"), bucket("bk-east"));
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |extra: &str| {
        format!("[stack]\nname = \"bk\"\nregion = \"eu-central-1\"\n\n[s3_bucket.site]\n{extra}\n[s3_bucket.east]\nregion = \"us-east-1\"\n")
    };
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.conf(common::REGION)).endpoint_url(&ep).force_path_style(true).build(),
    );
    // Another stack's bucket whose name starts like this stack's.
    s3.create_bucket()
        .bucket("bk-other")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuCentral1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    std::fs::write(path, src("")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "create");
    let block = s3.get_public_access_block().bucket(&site).send().await.unwrap();
    let b = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (b.block_public_acls(), b.ignore_public_acls(), b.block_public_policy(), b.restrict_public_buckets()),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = s3.get_bucket_encryption().bucket(&site).send().await.unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm(),
        &aws_sdk_s3::types::ServerSideEncryption::Aes256
    );
    let loc = s3.get_bucket_location().bucket(&east).send().await.unwrap();
    assert!(loc.location_constraint().is_none_or(|c| c.as_str().is_empty()), "{loc:?}");
    let tags = s3.get_bucket_tagging().bucket(&site).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == "provisioner:id" && t.value() == "s3_bucket.site"));
    let r = run(&ep, &["plan", path]);
    ok(&r, 0, "in sync");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert_eq!(out["s3_bucket.site"]["regional_domain"], format!("{site}.s3.eu-central-1.amazonaws.com"));

    std::fs::write(path, src("versioning = true")).unwrap();
    converge(&ep, path, &["~ versioning = false -> true"]);
    let v = s3.get_bucket_versioning().bucket(&site).send().await.unwrap();
    assert_eq!(v.status(), Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled));
    for body in ["one", "two"] {
        s3.put_object().bucket(&site).key("index.html").body(body.as_bytes().to_vec().into()).send().await.unwrap();
    }
    let r = run(&ep, &["destroy", path, "--yes"]);
    ok(&r, 1, "a bucket with objects is not destroyed");
    assert!(r.1.contains("still holds objects") && r.1.contains("force_destroy"), "{}", r.1);
    // A destroy has no stack file: force_destroy is applied to the bucket (a tag) first.
    std::fs::write(path, src("versioning = true\nforce_destroy = true")).unwrap();
    converge(&ep, path, &["~ force_destroy = false -> true"]);
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy with force_destroy");
    let left: Vec<String> =
        s3.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name()).map(str::to_owned).collect();
    assert_eq!(left, ["bk-other"]);
}
