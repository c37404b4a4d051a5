//! EC2: a host from its user data.

use super::*;

/// An EC2 host: AMI from the public SSM parameter, IMDSv2 required, no key pair, encrypted gp3
/// root volume, user data from a file; the volume grows in place; a changed user data file
/// replaces the host with the new one made first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_from_its_user_data() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (dir, path) = stack_file();
    let path = path.as_str();
    std::fs::write(dir.path().join("host.yaml"), "#cloud-config\npackages: [docker]\n").unwrap();
    let with = |gb: u32, profile: &str| {
        format!(
            "{}[iam_role.host]\ntrusted_services = [\"ec2.amazonaws.com\"]\n\n\
             [iam_instance_profile.host]\nrole = \"iam_role.host\"\n\n\
             [iam_instance_profile.other]\nrole = \"iam_role.host\"\n\n\
             [instance.host]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.a\"\nsecurity_groups = [\"security_group.lb\"]\n\
             instance_profile = \"iam_instance_profile.{profile}\"\nuser_data = \"host.yaml\"\nroot_volume_gb = {gb}\n",
            LB_NET.replace("name = \"lb\"", "name = \"host\"")
        )
    };
    let src = |gb: u32| with(gb, "host");
    std::fs::write(path, src(20)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let host = || async {
        let d = moto.ec2().describe_instances().filters(stack_filter("host")).send().await.unwrap();
        let alive: Vec<aws_sdk_ec2::types::Instance> = d
            .reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "running"))
            .collect();
        assert_eq!(alive.len(), 1, "one host: {alive:?}");
        alive[0].clone()
    };
    let first = host().await;
    assert_eq!(first.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"));
    assert_eq!(first.metadata_options().and_then(|m| m.http_put_response_hop_limit()), Some(1), "host network only");
    assert!(first.key_name().is_none(), "no key pair");
    assert!(first.iam_instance_profile().unwrap().arn().unwrap().ends_with("/host-host"));
    let ami = moto
        .client::<aws_sdk_ssm::Client>(common::REGION)
        .get_parameter()
        .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
        .send()
        .await
        .unwrap();
    assert_eq!(first.image_id(), ami.parameter().unwrap().value());
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");

    std::fs::write(path, src(30)).unwrap();
    converge(&ep, path, &["~ root_volume_gb = 20 -> 30", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    assert_eq!(host().await.instance_id(), first.instance_id(), "grown in place");

    // Another profile: its association replaced on the running host.
    std::fs::write(path, with(30, "other")).unwrap();
    converge(&ep, path, &["~ instance_profile = \"iam_instance_profile.host\" -> \"iam_instance_profile.other\""]);
    let now = host().await;
    assert_eq!(now.instance_id(), first.instance_id(), "the same host");
    // (Asked of the association: moto's DescribeInstances keeps showing the launch profile.)
    let assoc = moto
        .ec2()
        .describe_iam_instance_profile_associations()
        .filters(aws_sdk_ec2::types::Filter::builder().name("instance-id").values(now.instance_id().unwrap()).build())
        .send()
        .await
        .unwrap();
    let arn = assoc.iam_instance_profile_associations()[0].iam_instance_profile().unwrap().arn().unwrap().to_owned();
    assert!(arn.ends_with("/host-other"), "{arn}");
    std::fs::write(path, src(30)).unwrap();
    converge(&ep, path, &["~ instance_profile = \"iam_instance_profile.other\" -> \"iam_instance_profile.host\""]);

    std::fs::write(dir.path().join("host.yaml"), "#cloud-config\npackages: [docker, jq]\n").unwrap();
    proxy.take_calls();
    converge(&ep, path, &["-/+ instance.host", "# forces replacement"]);
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c == a).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("RunInstances") < at("TerminateInstances"), "the new host first: {calls:?}");
    let second = host().await;
    assert_ne!(second.instance_id(), first.instance_id());

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let d = moto.ec2().describe_instances().filters(stack_filter("host")).send().await.unwrap();
    assert!(d
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "terminated")));
}
