//! CloudFront, Cognito, Lambda@Edge and S3 together: the FinOps site on AWS.

use super::*;

/// The FinOps site's AWS side on moto: a private bucket read only by the distribution (behind a
/// CloudFront-scope WAF ACL) through an origin access control, a user pool with its domain, a code-flow client whose sign-in
/// returns to the distribution, a user, and the edge function in us-east-1 whose package bakes
/// in the pool's issuer, the client's id, the pool's keys (fetched from where the pool publishes
/// them) and a generated state key, run by the distribution on viewer-request and
/// origin-response. Created, in sync on the next plan; the first password in Parameter Store
/// and in no output; a new bundle publishes a version and moves the distribution to it in one
/// apply; a destroy meeting Lambda@Edge replicas (EMULATED at the proxy, as AWS answers for
/// hours) finishes, reports the function left, and the next destroy deletes it, leaving nothing
/// tagged in either region. moto drops the distribution's origin access control id and Lambda
/// associations: the proxy keeps and plays them (EMULATED, see `common`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finops_site_on_aws() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (dir, path) = stack_file();
    let path = path.as_str();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(pkg.join("index.mjs"), "export const handler = async (e) => e;\n").unwrap();
    let src = r#"[stack]
name = "fo"
region = "eu-central-1"

[iam_role.edge]
trusted_services = ["lambda.amazonaws.com", "edgelambda.amazonaws.com"]

[cloudfront_origin_access_control.site]

[s3_bucket.site]
force_destroy = true

[s3_bucket_policy.site]
bucket = "s3_bucket.site"
read_by = ["${cloudfront_distribution.site.arn}"]
# moto is reached over plain HTTP and applies `aws:SecureTransport` to it.
https_only = false

[cloudfront_distribution.site]
origin_domain = "${s3_bucket.site.regional_domain}"
origin_access_control = "cloudfront_origin_access_control.site"
viewer_request = "${lambda_function.auth.version_arn}"
origin_response = "${lambda_function.auth.version_arn}"
web_acl = "waf_web_acl.edge"

[waf_web_acl.edge]
scope = "CLOUDFRONT"
region = "us-east-1"
rate_limit = 1000

[cognito_user_pool.finops]
deletion_protection = false

[cognito_user_pool_domain.finops_login]
pool = "cognito_user_pool.finops"

[cognito_user_pool_client.finops]
pool = "cognito_user_pool.finops"
sites = [{ distribution = "cloudfront_distribution.site" }]
callback_urls = ["https://finops.example.test/callback"]
logout_urls = ["https://finops.example.test/"]

[cognito_user.ops]
pool = "cognito_user_pool.finops"
email = "ops@example.test"

[lambda_function.auth]
region = "us-east-1"
edge = true
role = "${iam_role.edge.arn}"
package = "pkg"
config = { issuer = "${cognito_user_pool.finops.issuer}", clientId = "${cognito_user_pool_client.finops.id}", authDomain = "${cognito_user_pool_domain.finops_login.url}" }
fetch = { jwks = "${cognito_user_pool.finops.jwks_url}" }
secrets = ["stateKey"]

[cost_site.dashboard]
bucket = "s3_bucket.site"
distribution = "cloudfront_distribution.site"
page = "ASSETS/finops/site"
libraries = ["ASSETS/finops/node_modules/chart.js/dist/chart.umd.min.js"]
"#;
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets");
    let src = src.replace("ASSETS", assets);
    let src = src.as_str();
    std::fs::write(path, src).unwrap();
    let plan = run(&ep, &["plan", path]);
    ok(&plan, 2, "plan");
    assert!(plan.1.contains("# its name is global across AWS"), "{}", plan.1);
    let applied = run(&ep, &["apply", path, "--yes"]);
    ok(&applied, 0, "apply");
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    // The bucket and the domain prefix carry the account's suffix (names global across AWS).
    let suffix = provisioner::kinds::account::suffix_of("123456789012");
    let site_bucket = format!("fo-site-{suffix}");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert_eq!(out["s3_bucket.site"]["name"], site_bucket.as_str());
    assert!(out["cognito_user_pool_domain.finops_login"]["id"].as_str().is_some_and(|d| d.ends_with(&suffix)), "{out}");

    // The first password: in Parameter Store as a SecureString, and nowhere in the output.
    let ssm = aws_sdk_ssm::Client::from_conf(aws_sdk_ssm::config::Builder::from(&moto.conf(common::REGION)).build());
    let p = ssm.get_parameter().name("/fo/cognito/ops").with_decryption(true).send().await.unwrap();
    let p = p.parameter().unwrap();
    assert_eq!(p.r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString));
    let password = p.value().unwrap().to_owned();
    assert_eq!(password.len(), 24);
    for out in [&plan.1, &plan.2, &applied.1, &applied.2] {
        assert!(!out.contains(&password), "the password shows in the output");
    }
    // Its parameter deleted, the user is no longer provably the stack's: apply names it and
    // never sets its password (a person's own by then); the parameter it wrote goes again.
    ssm.delete_parameter().name("/fo/cognito/ops").send().await.unwrap();
    let before = proxy.calls().len();
    let r = run(&ep, &["apply", path, "--yes"]);
    ok(&r, 1, "a user not provably the stack's");
    assert!(r.1.contains("already has a user `ops` that is not provably this stack's"), "{}", r.1);
    let set: Vec<String> =
        proxy.calls()[before..].iter().map(|c| c.action.clone()).filter(|a| a.contains("SetUserPassword")).collect();
    assert!(set.is_empty(), "no password set: {set:?}");
    assert!(ssm.get_parameter().name("/fo/cognito/ops").send().await.is_err(), "no parameter claims it");
    // The way out it names: the user deleted, apply makes it again with a new first password.
    let pool_id = idp_pool(&moto).await;
    let idp0 = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&moto.conf(common::REGION)).build(),
    );
    idp0.admin_delete_user().user_pool_id(&pool_id).username("ops").send().await.unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "the user made again");
    ok(&run(&ep, &["plan", path]), 0, "in sync again");

    // The sign-in returns to the distribution, which runs version 1 of the function.
    let cf = aws_sdk_cloudfront::Client::from_conf(
        aws_sdk_cloudfront::config::Builder::from(&moto.conf(common::REGION)).endpoint_url(&ep).build(),
    );
    let list = cf.list_distributions().send().await.unwrap();
    let d = &list.distribution_list().unwrap().items()[0];
    let (dist_id, domain) = (d.id().to_owned(), d.domain_name().to_owned());
    let idp = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&moto.conf(common::REGION)).build(),
    );
    let pool = idp.list_user_pools().max_results(60).send().await.unwrap().user_pools()[0].id().unwrap().to_owned();
    let clients = idp.list_user_pool_clients().user_pool_id(&pool).send().await.unwrap();
    let client_id = clients.user_pool_clients()[0].client_id().unwrap().to_owned();
    let c = idp.describe_user_pool_client().user_pool_id(&pool).client_id(&client_id).send().await.unwrap();
    let c = c.user_pool_client().unwrap();
    assert!(c.callback_urls().contains(&format!("https://{domain}/callback")), "{:?}", c.callback_urls());
    assert!(c.logout_urls().contains(&format!("https://{domain}/")), "{:?}", c.logout_urls());
    assert_eq!(c.allowed_o_auth_flows(), &[aws_sdk_cognitoidentityprovider::types::OAuthFlowType::Code]);
    assert_eq!(c.client_secret(), None, "a public client");
    assert_eq!(
        c.explicit_auth_flows(),
        &[aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType::AllowRefreshTokenAuth],
        "no sign-in around the hosted UI"
    );
    let edge_arn = |cfg: &aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput| {
        let b = cfg.distribution_config().unwrap().default_cache_behavior().unwrap();
        b.lambda_function_associations()
            .unwrap()
            .items()
            .iter()
            .map(|a| a.lambda_function_arn().to_owned())
            .collect::<Vec<_>>()
    };
    let cfg = cf.get_distribution_config().id(&dist_id).send().await.unwrap();
    assert!(
        edge_arn(&cfg).iter().all(|a| a.ends_with("function:fo-auth:1")) && edge_arn(&cfg).len() == 2,
        "{:?}",
        edge_arn(&cfg)
    );
    let acl = cfg.distribution_config().unwrap().web_acl_id().unwrap_or_default();
    assert!(acl.contains(":global/webacl/fo-edge/"), "behind the CloudFront-scope ACL: {acl}");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.conf(common::REGION)).force_path_style(true).build(),
    );
    let policy = s3.get_bucket_policy().bucket(&site_bucket).send().await.unwrap();
    assert!(policy.policy().unwrap().contains(&format!("distribution/{dist_id}")), "read by the distribution");

    // The dashboard: hashed assets cached for a year, the index for a minute with the estimate
    // inline, one estimate in the history, and only the index invalidated.
    let get = |key: &'static str| {
        let (s3, bucket) = (s3.clone(), site_bucket.clone());
        async move { s3.get_object().bucket(bucket).key(key).send().await.unwrap() }
    };
    let index = get("index.html").await;
    assert_eq!(index.cache_control(), Some("public, max-age=60"));
    let page = String::from_utf8(index.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert!(page.contains(r#"<script type="application/json" id="data">{"breakdown":"#), "{page}");
    let listed = s3.list_objects_v2().bucket(&site_bucket).prefix("assets/").send().await.unwrap();
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    assert_eq!(keys.len(), 3, "app, style, chart library, and no other: {keys:?}");
    for k in &keys {
        assert!(page.contains(&format!("/{k}")), "the index names {k}");
        let head = s3.head_object().bucket(&site_bucket).key(k).send().await.unwrap();
        assert_eq!(head.cache_control(), Some("public, max-age=31536000, immutable"));
    }
    let history = |page: &str| -> usize {
        let data = page.split(r#"id="data">"#).nth(1).unwrap().split("</script>").next().unwrap();
        serde_json::from_str::<serde_json::Value>(data).unwrap()["history"].as_array().unwrap().len()
    };
    assert_eq!(history(&page), 1);
    let invalidations = |calls: &[common::Call]| -> Vec<String> {
        calls.iter().filter(|c| c.action.ends_with("/invalidation") && c.status < 300).map(|c| c.body.clone()).collect()
    };
    let sent = invalidations(&proxy.calls());
    assert_eq!(sent.len(), 1, "one invalidation");
    assert!(
        sent[0].contains("<Path>/index.html</Path>")
            && sent[0].contains("<Quantity>2</Quantity>")
            && !sent[0].contains("assets/"),
        "{}",
        sent[0]
    );
    // A new estimate (more requests assumed): the site changes, its history grows, one more
    // invalidation of the index; the assets stay.
    let busier = format!("{src}\n[usage]\ncdn_requests = 20000000\n");
    std::fs::write(path, &busier).unwrap();
    converge(&ep, path, &["~ cost_site.dashboard", "content_sha256"]);
    let page = String::from_utf8(get("index.html").await.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert_eq!(history(&page), 2);
    assert_eq!(invalidations(&proxy.calls()).len(), 2);
    std::fs::write(path, src).unwrap();
    converge(&ep, path, &["~ cost_site.dashboard"]);

    // The package: the files and config.json.
    let lambda =
        aws_sdk_lambda::Client::from_conf(aws_sdk_lambda::config::Builder::from(&moto.conf("us-east-1")).build());
    let f = lambda.get_function().function_name("fo-auth").send().await.unwrap();
    assert_eq!(f.configuration().unwrap().memory_size(), Some(128));
    let published = |v: &aws_sdk_lambda::operation::list_versions_by_function::ListVersionsByFunctionOutput| {
        v.versions().iter().filter(|v| v.version() != Some("$LATEST")).count()
    };
    assert_eq!(published(&lambda.list_versions_by_function().function_name("fo-auth").send().await.unwrap()), 1);

    // A new bundle: the function changes, and the distribution with it, in one apply.
    std::fs::write(pkg.join("index.mjs"), "export const handler = async (e) => ({ ...e });\n").unwrap();
    converge(&ep, path, &["~ lambda_function.auth", "code_sha256", "~ cloudfront_distribution.site", "viewer_request"]);
    assert_eq!(published(&lambda.list_versions_by_function().function_name("fo-auth").send().await.unwrap()), 2);
    let cfg = cf.get_distribution_config().id(&dist_id).send().await.unwrap();
    assert!(edge_arn(&cfg).iter().all(|a| a.ends_with("function:fo-auth:2")), "{:?}", edge_arn(&cfg));

    // A dropped sign-out URL is an in-place change of the client.
    std::fs::write(path, src.replace("logout_urls = [\"https://finops.example.test/\"]\n", "")).unwrap();
    converge(&ep, path, &["~ cognito_user_pool_client.finops"]);

    // AWS keeps the function's replicas for hours after the distribution let go of it.
    proxy.state.edge_replicas.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    let out =
        common::cli(&ep).env("PROVISIONER_EDGE_REPLICA_WAIT", "2").args(["destroy", path, "--yes"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("left:    lambda_function.auth") && text.contains("replicas"), "{text}");
    assert!(text.contains(&format!("provisioner destroy {path}")), "{text}");
    assert!(
        cf.list_distributions().send().await.unwrap().distribution_list().unwrap().items().is_empty(),
        "the rest is gone"
    );
    assert_eq!(lambda.list_functions().send().await.unwrap().functions().len(), 1, "the function is left");
    // The function's package bakes in the pool's issuer and keys (outputs read back as values):
    // the pool goes after it, so it is left with it.
    assert!(text.contains("left:    cognito_user_pool.finops (waits for the above)"), "{text}");
    // Later: the replicas are gone, and the same command finishes.
    proxy.state.edge_replicas.store(0, std::sync::atomic::Ordering::SeqCst);
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy again");
    assert!(lambda.list_functions().send().await.unwrap().functions().is_empty(), "no function left in us-east-1");
    assert!(idp.list_user_pools().max_results(60).send().await.unwrap().user_pools().is_empty(), "no pool left");
    assert!(ssm.get_parameter().name("/fo/cognito/ops").send().await.is_err(), "no password left");
    assert!(cf
        .list_origin_access_controls()
        .send()
        .await
        .unwrap()
        .origin_access_control_list()
        .unwrap()
        .items()
        .is_empty());
    assert!(s3.list_buckets().send().await.unwrap().buckets().is_empty());
    let iam = moto.iam();
    assert!(
        iam.list_roles().send().await.unwrap().roles().iter().all(|r| !r.role_name().starts_with("fo-")),
        "no role left"
    );
    let waf = moto.client::<aws_sdk_wafv2::Client>("us-east-1");
    let acls = waf.list_web_acls().scope(aws_sdk_wafv2::types::Scope::Cloudfront).send().await.unwrap();
    assert!(acls.web_acls().is_empty(), "no ACL left in us-east-1");
}

/// The id of the one user pool on `moto`.
async fn idp_pool(moto: &Moto) -> String {
    let idp = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&moto.conf(common::REGION)).build(),
    );
    idp.list_user_pools().max_results(60).send().await.unwrap().user_pools()[0].id().unwrap().to_owned()
}
