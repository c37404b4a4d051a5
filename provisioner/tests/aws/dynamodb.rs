//! DynamoDB: the services' table from its layout file, a global table's replicas.

use super::*;

/// The services' table from their own layout file: created with its indexes and settings, no
/// diff afterwards, used by the services' own store, changed in place, protected from deletion
/// until told otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_table_from_their_layout_file() {
    use quake::store::Store;
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = root("services/src/store/table.json");
    let src = |layout: &str, ttl: &str, stream: &str, protect: bool| {
        let ttl = if ttl.is_empty() { String::new() } else { format!("ttl_attribute = \"{ttl}\"\n") };
        format!(
            "[stack]\nname = \"tbl\"\nregion = \"eu-central-1\"\n\n\
             [dynamodb_table.quakes]\nlayout = \"{layout}\"\n{ttl}point_in_time_recovery = true\n\
             stream = \"{stream}\"\ndeletion_protection = {protect}\ntags = {{ data = \"events\" }}\n"
        )
    };
    let path = dir.path().join("stack.toml");
    let path = path.to_str().unwrap();

    // A layout DynamoDB would refuse, and a missing file: located, no call.
    let bad = dir.path().join("bad.json");
    let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    j["AttributeDefinitions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"AttributeName": "x", "AttributeType": "S"}));
    std::fs::write(&bad, j.to_string()).unwrap();
    for (file, code) in [(bad.to_str().unwrap(), "bad-layout"), ("nowhere.json", "bad-file")] {
        std::fs::write(path, src(file, "expires", "NEW_IMAGE", false)).unwrap();
        let r = run(&ep, &["plan", path]);
        ok(&r, 1, code);
        assert!(r.2.contains(code), "{}", r.2);
    }
    assert!(proxy.take_calls().is_empty());

    std::fs::write(path, src(&layout, "expires", "none", false)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let ddb = moto.dynamodb();
    let t = ddb.describe_table().table_name("tbl-quakes").send().await.unwrap();
    let t = t.table().unwrap();
    let mut gsis: Vec<&str> = t.global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    gsis.sort();
    assert_eq!(gsis, ["by_feed", "by_time"]);
    assert_eq!(t.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str()), Some("PAY_PER_REQUEST"));
    let ttl = ddb.describe_time_to_live().table_name("tbl-quakes").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some("expires"));
    let r = run(&ep, &["plan", path]);
    ok(&r, 0, "plan after apply: nothing read back differs");

    // The services' own store works on it: a write, a read by unid, a time window, the feed.
    let store = quake::store::dynamo::DynamoStore::new(ddb.clone(), "tbl-quakes");
    let now = quake::web::now_us();
    let env = common::envelope("20991231_0000001", now, 1);
    store.upsert(&env).await.unwrap();
    assert!(store.get("20991231_0000001").await.unwrap().is_some());
    assert_eq!(store.window(&quake::store::WindowQuery::new(now - 1, now + 1)).await.unwrap().len(), 1);
    assert_eq!(store.changes_since(0, 10).await.unwrap().events.len(), 1);

    // Indexes change in place, one UpdateTable each, and the data stays; a changed key would
    // replace the table, and the plan says so.
    let mut fewer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    let dropped = fewer["GlobalSecondaryIndexes"].as_array_mut().unwrap().remove(0);
    let dropped_name = dropped["IndexName"].as_str().unwrap().to_owned();
    let fewer_path = dir.path().join("fewer.json");
    // (`AttributeDefinitions` must name only key attributes: drop those only the index used.)
    let used: BTreeSet<String> = fewer["KeySchema"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            fewer["GlobalSecondaryIndexes"].as_array().unwrap().iter().flat_map(|g| g["KeySchema"].as_array().unwrap()),
        )
        .map(|k| k["AttributeName"].as_str().unwrap().to_owned())
        .collect();
    fewer["AttributeDefinitions"]
        .as_array_mut()
        .unwrap()
        .retain(|a| used.contains(a["AttributeName"].as_str().unwrap()));
    std::fs::write(&fewer_path, fewer.to_string()).unwrap();
    std::fs::write(path, src(fewer_path.to_str().unwrap(), "expires", "none", false)).unwrap();
    converge(&ep, path, &["~ dynamodb_table.quakes {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    let t = ddb.describe_table().table_name("tbl-quakes").send().await.unwrap();
    let names: Vec<&str> =
        t.table().unwrap().global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    assert!(!names.contains(&dropped_name.as_str()), "{names:?}");
    assert!(store.get("20991231_0000001").await.unwrap().is_some(), "the table kept its data");
    // Back as an INCLUDE projection: its non-key attributes written and read back as declared.
    let mut include = fewer.clone();
    let mut back = dropped.clone();
    back["Projection"] = serde_json::json!({"ProjectionType": "INCLUDE", "NonKeyAttributes": ["region", "mag"]});
    include["GlobalSecondaryIndexes"].as_array_mut().unwrap().push(back);
    include["AttributeDefinitions"] =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&layout).unwrap()).unwrap()
            ["AttributeDefinitions"]
            .clone();
    let include_path = dir.path().join("include.json");
    std::fs::write(&include_path, include.to_string()).unwrap();
    std::fs::write(path, src(include_path.to_str().unwrap(), "expires", "none", false)).unwrap();
    converge(&ep, path, &["~ dynamodb_table.quakes {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    let t = ddb.describe_table().table_name("tbl-quakes").send().await.unwrap();
    let g =
        t.table().unwrap().global_secondary_indexes().iter().find(|g| g.index_name() == Some(&dropped_name)).cloned();
    let p = g.and_then(|g| g.projection().cloned()).unwrap();
    assert_eq!(p.projection_type().map(|t| t.as_str()), Some("INCLUDE"));
    let mut attrs = p.non_key_attributes().to_vec();
    attrs.sort();
    assert_eq!(attrs, ["mag", "region"]);
    std::fs::write(path, src(&layout, "expires", "none", false)).unwrap();
    converge(&ep, path, &["~ dynamodb_table.quakes {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    assert!(store.get("20991231_0000001").await.unwrap().is_some(), "the table kept its data");
    // The table's key attribute renamed (`unid` is used by no index).
    let rekeyed = std::fs::read_to_string(&layout).unwrap().replace("\"unid\"", "\"pk2\"");
    let rekeyed_path = dir.path().join("rekeyed.json");
    std::fs::write(&rekeyed_path, rekeyed).unwrap();
    std::fs::write(path, src(rekeyed_path.to_str().unwrap(), "expires", "none", false)).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan a new key");
    assert!(r.1.contains("-/+ dynamodb_table.quakes") && r.1.contains("# forces replacement"), "{}", r.1);

    // A renamed TTL attribute is two TTL changes, which DynamoDB refuses within an hour: the
    // plan says so and apply changes nothing; in two applies it goes through.
    std::fs::write(path, src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", true)).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 1, "plan a TTL rename");
    assert!(r.1.contains("# cannot be applied: renaming the TTL attribute"), "{}", r.1);
    assert!(r.2.contains("remove `ttl_attribute` and apply, then set it to `gone_at`"), "{}", r.2);
    proxy.take_calls();
    ok(&run(&ep, &["apply", path, "--yes"]), 1, "apply a TTL rename");
    assert!(proxy.take_calls().iter().all(|c| !c.action.contains("Update")), "nothing was changed");
    // In place: TTL off, a stream, deletion protection on; then the new TTL attribute.
    // (Changing the view of an enabled stream, off then on, stays unproven: moto never enables
    // a stream twice; so does the hour between TTL changes: moto does not count it.)
    std::fs::write(path, src(&layout, "", "NEW_AND_OLD_IMAGES", true)).unwrap();
    converge(
        &ep,
        path,
        &[
            "~ dynamodb_table.quakes {",
            "~ ttl_attribute = \"expires\" -> (none)",
            "~ deletion_protection = false -> true",
            "~ stream = \"none\" -> \"NEW_AND_OLD_IMAGES\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    std::fs::write(path, src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", true)).unwrap();
    converge(&ep, path, &["~ ttl_attribute = (none) -> \"gone_at\"", "Plan: 0 to add, 1 to change, 0 to destroy."]);

    // Protected: destroy is refused before anything is deleted (a log group beside the table
    // stays too) and says how to lift it; `--exclude-protected` deletes the rest; turned off,
    // the table goes.
    let with_logs =
        format!("{}\n[log_group.beside]\nretention_days = 7\n", src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", true));
    std::fs::write(path, &with_logs).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "a log group beside");
    proxy.take_calls();
    let r = run(&ep, &["destroy", path, "--yes"]);
    ok(&r, 1, "destroy a protected table");
    assert!(r.2.contains("refused, nothing was changed"), "{}", r.2);
    assert!(r.2.contains("dynamodb_table.quakes: set `deletion_protection = false` on it and apply first"), "{}", r.2);
    assert!(r.2.contains("--exclude-protected"), "{}", r.2);
    // (The lock table's items aside.)
    let deletes: Vec<String> = proxy
        .take_calls()
        .into_iter()
        .filter(|c| c.action.contains("Delete") && !c.body.contains(provisioner::lock::TABLE))
        .map(|c| c.action)
        .collect();
    assert!(deletes.is_empty(), "nothing deleted: {deletes:?}");
    let r = run(&ep, &["destroy", path, "--yes", "--exclude-protected"]);
    ok(&r, 0, "destroy all but the protected table");
    assert!(r.1.contains("keeping dynamodb_table.quakes (protected)"), "{}", r.1);
    assert!(r.1.contains("- log_group.beside"), "{}", r.1);
    assert!(!r.1.contains("- dynamodb_table.quakes"), "{}", r.1);
    assert!(ddb.describe_table().table_name("tbl-quakes").send().await.is_ok());
    std::fs::write(path, src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", false)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "unprotect");
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let tables = ddb.list_tables().send().await.unwrap();
    assert!(!tables.table_names().iter().any(|n| n.starts_with("tbl-")), "{:?}", tables.table_names());
}

/// A global table (version 2019.11.21). moto accepts replica updates and ignores them, so the
/// proxy EMULATES their effect on `DescribeTable` (see `ProxyState::global_tables`): what is
/// proven here is the requests - which replica updates, one per call, in which order - and that
/// a plan over AWS's documented answer is empty. Replication itself stays unproven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_adds_and_removes_replicas() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    proxy.emulate_global_tables();
    let ep = proxy.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = root("services/src/store/table.json");
    let src = |replicas: &str, stream: &str| {
        format!(
            "[stack]\nname = \"glob\"\nregion = \"eu-central-1\"\n\n\
             [dynamodb_table.quakes]\nlayout = \"{layout}\"\nstream = \"{stream}\"\nreplicas = [{replicas}]\n"
        )
    };
    let path = dir.path().join("stack.toml");
    let path = path.to_str().unwrap();
    for (replicas, stream, code) in [
        ("\"eu-west-1\"", "none", "replicas-need-stream"),
        ("\"eu-central-1\"", "NEW_AND_OLD_IMAGES", "bad-replica"),
        ("\"eu-west-1\", \"eu-west-1\"", "NEW_AND_OLD_IMAGES", "bad-replica"),
        ("\"mars-1\"", "NEW_AND_OLD_IMAGES", "bad-enum"),
    ] {
        std::fs::write(path, src(replicas, stream)).unwrap();
        let r = run(&ep, &["validate", path]);
        assert_eq!(r.0, 1, "{replicas}: {}", r.2);
        assert!(r.2.contains(code) || (code == "bad-enum" && r.2.contains("mars-1")), "{replicas}: {}", r.2);
    }
    let replica_updates = |calls: &[Call]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.action.ends_with(".UpdateTable") && c.status < 300)
            .filter_map(|c| {
                let call = proxy_body(c);
                let u = call["ReplicaUpdates"].as_array()?.first()?.clone();
                let (op, r) = if u["Create"].is_object() { ("create", &u["Create"]) } else { ("delete", &u["Delete"]) };
                Some(format!("{op} {}", r["RegionName"].as_str()?))
            })
            .collect()
    };

    std::fs::write(path, src("\"eu-west-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    proxy.take_calls();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply with one replica");
    let calls = proxy.take_calls();
    assert_eq!(replica_updates(&calls), ["create eu-west-1"]);
    let created = calls.iter().position(|c| c.action.ends_with(".CreateTable")).unwrap();
    let replicated = calls.iter().position(|c| c.action.ends_with(".UpdateTable")).unwrap();
    assert!(created < replicated, "the table first, then its replica");
    ok(&run(&ep, &["plan", path]), 0, "plan after apply (over the emulated answer)");

    std::fs::write(path, src("\"us-east-1\", \"eu-west-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan another replica");
    assert!(r.1.contains("~ replicas"), "{}", r.1);
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "add a replica");
    assert_eq!(replica_updates(&proxy.take_calls()), ["create us-east-1"]);
    std::fs::write(path, src("\"us-east-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "remove a replica");
    assert_eq!(replica_updates(&proxy.take_calls()), ["delete eu-west-1"]);
    ok(&run(&ep, &["plan", path]), 0, "in sync");

    // Point-in-time recovery on every copy: the replica is a table of its own region with
    // backups of its own (EMULATED with the replica), and one without them is drift.
    let with_pitr = |replicas: &str| src(replicas, "NEW_AND_OLD_IMAGES") + "point_in_time_recovery = true\n";
    std::fs::write(path, with_pitr("\"us-east-1\"")).unwrap();
    converge(&ep, path, &["~ point_in_time_recovery = false -> true"]);
    let backups = |calls: &[Call]| {
        calls.iter().filter(|c| c.action.ends_with(".UpdateContinuousBackups") && c.status < 300).count()
    };
    assert_eq!(backups(&proxy.take_calls()), 2, "the table and its replica");
    std::fs::write(path, with_pitr("\"us-east-1\", \"eu-west-1\"")).unwrap();
    converge(&ep, path, &["~ replicas"]);
    assert_eq!(backups(&proxy.take_calls()), 3, "a new replica gets recovery too (and so, again, the others)");
    proxy.state.replica_pitr.lock().unwrap().insert(("eu-west-1".into(), "glob-quakes".into()), false);
    converge(&ep, path, &["~ point_in_time_recovery = false -> true"]);
    std::fs::write(path, src("\"us-east-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "recovery off, one replica less");
    proxy.take_calls();

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let calls = proxy.take_calls();
    assert_eq!(replica_updates(&calls), ["delete us-east-1"], "replicas go first");
    let unreplicated = calls.iter().position(|c| c.action.ends_with(".UpdateTable")).unwrap();
    let deleted = calls.iter().position(|c| c.action.ends_with(".DeleteTable")).unwrap();
    assert!(unreplicated < deleted, "the replica before the table");
}
