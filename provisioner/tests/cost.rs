//! `provisioner cost`, offline: the production stack against a total computed by hand from the
//! snapshot, line by line; a region the snapshot lacks; a broken snapshot.

use std::process::Command;

fn cost(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args([&["cost"][..], args].concat())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn close(what: &str, got: f64, want: f64) {
    assert!((got - want).abs() < 0.0001, "{what}: got {got}, want {want}");
}

/// Every paid resource of the default production stack (logging co-located) at the stack's
/// [usage], from the eu-central-1 prices of the snapshot (and eu-west-1 for the replica).
#[test]
fn the_production_stack_costs_what_the_hand_computes() {
    let h = 730.0;
    // ALB hours; LCUs from 172,800 requests a month (0.00263 new connections a second / 25
    // beats 0.05 GB / 730 h). Internal behind CloudFront: no public address, no data out.
    let alb = h * 0.027 + (172_800.0 / (h * 3600.0) / 25.0) * h * 0.008;
    // The map's distribution: 0.1728 million requests and 0.05 GB out, with the FinOps site's,
    // inside CloudFront's free 10 million and 1 TB.
    let map_cdn = 0.0;
    // The ACL, a rate rule and two managed groups, 0.1728 million requests.
    let waf = 5.0 + 3.0 + 0.1728 * 0.60;
    // 86,400 writes to the table and its two indexes, 600,000 reads, 0.1 GB x 3 stored (free),
    // backups of the 0.3 GB; in eu-west-1 the replicated writes and the index writes (storage
    // free too), and the replica's own backups.
    let table = 0.2592 * 0.7625 + 0.6 * 0.1525 + 0.3 * 0.2448 + 0.0864 * 0.7063 + 0.1728 * 0.7063 + 0.3 * 0.22;
    let ecr = 0.5 * 0.10;
    // One regular task of 0.25 vCPU and 0.5 GB with a public address; autoscaling's second
    // task on Spot at most.
    let web = h * (0.25 * 0.04656 + 0.5 * 0.00511 + 0.005);
    let web_max = web + h * (0.25 * 0.01397 + 0.5 * 0.00153 + 0.005);
    // t3a.small, 30 GB of gp3, its public address.
    let host = h * 0.0216 + 30.0 * 0.0952 + h * 0.005;
    // The FinOps site: 0.01 GB stored and 600 GETs; 6,000 requests and 0.12 GB inside
    // CloudFront's free tier, but every request runs the edge function (no free tier): $0.60 a
    // million and 5 ms at 128 MB each; three users inside Cognito's free 10,000.
    let bucket = 0.01 * 0.0245 + 0.0006 * 0.43;
    let cdn = 0.006 * 0.60 + 6000.0 * 0.005 * 0.125 * 0.00005001;
    // Logs (0.4 GB of the free 5) and 20 alert e-mails (of the free 1,000) cost nothing.
    let lines = [
        ("load_balancer.web", alb),
        ("waf_web_acl.web", waf),
        ("dynamodb_table.quakes", table),
        ("ecr_repository.quake", ecr),
        ("log_group.web", 0.0),
        // The edge function's own log groups: within the logs' free tier with the web log.
        ("lambda_function.finops_auth", 0.0),
        ("ecs_service.web", web),
        ("instance.streaming", host),
        ("sns_topic.alerts", 0.0),
        ("s3_bucket.finops", bucket),
        ("cloudfront_distribution.finops", cdn),
        ("cloudfront_distribution.web", map_cdn),
        ("cognito_user_pool.finops", 0.0),
    ];
    let (code, out, err) = cost(&["stacks/prod.toml", "--json"]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).unwrap();
    let resources = b["resources"].as_array().unwrap();
    for (address, want) in lines {
        let r = resources.iter().find(|r| r["address"] == address).unwrap_or_else(|| panic!("{address}"));
        close(address, r["monthly"].as_f64().unwrap(), want);
    }
    // Everything else AWS does not bill.
    for r in resources.iter().filter(|r| !lines.iter().any(|(a, _)| r["address"] == *a)) {
        assert!(r["components"].as_array().unwrap().is_empty(), "{r}");
    }
    let total: f64 = lines.iter().map(|(_, m)| m).sum();
    close("total", b["monthly"].as_f64().unwrap(), total);
    close("total at most", b["monthly_max"].as_f64().unwrap(), total - web + web_max);
    assert!(b["unpriced"].as_array().unwrap().is_empty(), "{}", b["unpriced"]);
    assert!(b["usage"].as_array().unwrap().iter().any(|u| u["name"] == "dynamodb_writes" && u["value"] == 86400.0));
    eprintln!("provisioner cost stacks/prod.toml: ${total:.2} a month (the old system: $165.76)");

    let (code, text, _) = cost(&["stacks/prod.toml"]);
    assert_eq!(code, 0);
    assert!(text.contains(&format!("Total: ${total:.2} a month")), "{text}");
    assert!(text.contains("instance (t3a.small)") && text.contains("730 hour x $0.0216"), "{text}");
    assert!(text.contains("dynamodb_writes = 86400 write request units a month"), "{text}");
    // Switched to a logging host of its own: the second host, at the same price.
    let (_, json, _) = cost(&["stacks/prod.toml", "--json", "--var", "separate_logging_host=true"]);
    let sep: serde_json::Value = serde_json::from_str(&json).unwrap();
    close("with a logging host", sep["monthly"].as_f64().unwrap(), total + host);
}

/// A stack in a region the snapshot does not hold: said once, its parts there listed as
/// unpriced, what is priced elsewhere (us-east-1) or everywhere still counted.
#[test]
fn a_region_without_prices_is_said_and_the_rest_priced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("north.toml");
    std::fs::write(
        &path,
        "[stack]\nname = \"north\"\nregion = \"eu-north-1\"\n\
         [vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.s]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n\
         [instance.h]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.s\"\n\
         [waf_web_acl.edge]\nscope = \"CLOUDFRONT\"\nregion = \"us-east-1\"\n\
         [log_group.l]\nretention_days = 30\n",
    )
    .unwrap();
    let (code, out, err) = cost(&[path.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let b: serde_json::Value = serde_json::from_str(&out).unwrap();
    let unpriced: Vec<&str> = b["unpriced"].as_array().unwrap().iter().filter_map(|u| u.as_str()).collect();
    assert!(unpriced[0].contains("has no prices for region eu-north-1"), "{unpriced:?}");
    assert!(unpriced.iter().any(|u| u.contains("instance.h") && u.contains("ec2.instance.t3.small")), "{unpriced:?}");
    // The public address (same price everywhere) and the ACL in us-east-1.
    close("priced", b["monthly"].as_f64().unwrap(), 730.0 * 0.005 + 5.0);
    let (_, text, _) = cost(&[path.to_str().unwrap()]);
    assert!(text.contains("UNPRICED, no `ec2.instance.t3.small` in eu-north-1"), "{text}");
    assert!(text.contains("Not in the total (no price in the snapshot):"), "{text}");
}

/// A snapshot with a price whose source is not listed: a located error, nothing priced.
#[test]
fn a_broken_snapshot_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prices.toml"),
        "[snapshot]\ndate = \"2026-01-01\"\ncurrency = \"USD\"\nhours_per_month = 730\n[sources]\n\
         [global]\n\"vpc.public_ipv4\" = { usd = 0.005, unit = \"hour\", source = \"vpc\", date = \"2026-01-01\" }\n",
    )
    .unwrap();
    let stack = dir.path().join("s.toml");
    std::fs::write(&stack, "[stack]\nname = \"s\"\nregion = \"eu-central-1\"\nprices = \"prices.toml\"\n[eip.a]\n")
        .unwrap();
    let (code, out, err) = cost(&[stack.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(err.contains("source `vpc` is not under [sources]") && err.contains("s.toml:4"), "{err}");
}
