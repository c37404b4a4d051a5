//! ECR: an image repository.

use super::*;

/// An ECR repository: created with its settings and lifecycle rule, no diff afterwards, changed
/// in place, destroyed; an upper-case name is refused before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_repository() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    // Discovery reads the images of every repository the stack owns over the registry API,
    // which moto does not serve.
    common::registry();
    let ep = proxy.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |name: &str, mutability: &str, scan: bool, keep: &str| {
        format!(
            "[stack]\nname = \"{name}\"\nregion = \"eu-central-1\"\n\n\
             [ecr_repository.quake]\nimage_tag_mutability = \"{mutability}\"\nscan_on_push = {scan}\n{keep}\n"
        )
    };
    std::fs::write(path, src("Repo", "IMMUTABLE", true, "keep_images = 10")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 1, "an upper-case repository name");
    assert!(r.2.contains("lower case"), "{}", r.2);
    assert!(proxy.take_calls().is_empty());

    std::fs::write(path, src("repo", "IMMUTABLE", false, "keep_images = 10")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let repos = moto.ecr().describe_repositories().repository_names("repo/quake").send().await.unwrap();
    let repo = &repos.repositories()[0];
    assert_eq!(repo.image_tag_mutability().map(|m| m.as_str()), Some("IMMUTABLE"));
    assert!(!repo.image_scanning_configuration().is_some_and(|c| c.scan_on_push()));
    let policy = moto.ecr().get_lifecycle_policy().repository_name("repo/quake").send().await.unwrap();
    assert!(policy.lifecycle_policy_text().unwrap().contains("\"countNumber\":10"));
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert!(out["ecr_repository.quake"]["url"].as_str().unwrap().ends_with("/repo/quake"), "{out}");

    // Scanning is turned on here, not off: the SDK leaves a `false` default out of the request
    // and moto then keeps the old value, so turning it off stays unproven on moto.
    std::fs::write(path, src("repo", "MUTABLE", true, "")).unwrap();
    converge(
        &ep,
        path,
        &[
            "~ image_tag_mutability = \"IMMUTABLE\" -> \"MUTABLE\"",
            "~ scan_on_push = false -> true",
            "~ keep_images = 10 -> (none)",
        ],
    );
    assert!(moto.ecr().get_lifecycle_policy().repository_name("repo/quake").send().await.is_err(), "the rule is gone");

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    assert!(moto.ecr().describe_repositories().send().await.unwrap().repositories().is_empty());
}
