//! The engine: finds what a stack owns (by tag, one describe per kind present), turns it into
//! the declared shape for the plan, and carries a plan out through the kinds' operations as a
//! graph of steps. It knows no kind by name: everything comes from the declarations.

mod exec;
#[cfg(test)]
mod fake;
mod inventory;
mod steps;

pub use exec::{apply, Outcome};
pub use inventory::{discover, plan, plan_keeping, protected, regions, Found, Inventory};
pub use steps::{graph, Phase, StepId};

use crate::provider::Cx;
use crate::stack::{desired, Stack, Val};
use serde_json::{Map, Value};

/// The context for a stack and a DynamoDB client (for the lock) in its region; the standard
/// configuration applies (credential chain, profiles, `AWS_ENDPOINT_URL`), so the same binary
/// runs against AWS or an emulator. Clients of other services and regions are made on first use.
pub async fn connect(stack: &Stack) -> (Cx, aws_sdk_dynamodb::Client) {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(stack.region.clone()))
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(5))
        .load()
        .await;
    let ddb = aws_sdk_dynamodb::Client::new(&conf);
    (Cx::new(conf, &stack.name, &stack.region), ddb)
}

/// Fills in every derived field ([`crate::schema::Field::derived`]) of every resource from its
/// kind (an image's digest, by building the image): once per command, before a plan.
pub fn derive(stack: &mut Stack) -> Result<(), String> {
    let dir = std::path::Path::new(&stack.file).parent().map(std::path::Path::to_path_buf).unwrap_or_default();
    let bill = || crate::cost::of_stack(stack);
    let on = crate::provider::Derive { dir: &dir, stack: &stack.name, bill: &bill };
    let derived: Vec<Option<Map<String, Value>>> = stack
        .resources
        .iter()
        .map(|r| {
            if !r.kind.fields.iter().any(|f| f.derived) {
                return Ok(None);
            }
            // What a kind is handed: its own fields, not the common ones.
            let want = crate::schema::own(&desired(r, stack));
            r.kind.ops.derive(&want, &on).map(Some).map_err(|e| format!("{}: {e}", r.address()))
        })
        .collect::<Result<_, String>>()?;
    for (r, got) in stack.resources.iter_mut().zip(derived) {
        let Some(got) = got else { continue };
        for f in r.kind.fields.iter().filter(|f| f.derived) {
            let v = match got.get(f.name) {
                Some(Value::String(s)) => Val::Str(s.clone()),
                Some(Value::Bool(b)) => Val::Bool(*b),
                Some(Value::Number(n)) if n.is_i64() => Val::Int(n.as_i64().unwrap_or_default()),
                other => return Err(format!("{}: the kind derived no {} ({other:?})", r.address(), f.name)),
            };
            r.fields.insert(f.name.to_owned(), (v, r.span.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Action;
    use crate::provider::Live;
    use serde_json::{json, Map};

    use crate::kinds::test_stack as stack;

    const SRC: &str = r#"
[stack]
name = "t"
region = "eu-central-1"
[vpc.main]
cidr = "10.0.0.0/16"
[subnet.a]
vpc = "vpc.main"
cidr = "10.0.1.0/24"
az = "a"
[security_group.alb]
vpc = "vpc.main"
description = "alb"
egress = [{ protocol = "tcp", from_port = 8080, group = "security_group.web" }]
[security_group.web]
vpc = "vpc.main"
description = "web"
ingress = [{ protocol = "tcp", from_port = 8080, group = "security_group.alb" }]
"#;

    /// What exists when `s` was applied, with each address standing in for its id.
    fn applied(s: &Stack) -> Inventory {
        let mut inv = Inventory { home: s.region.clone(), ..Inventory::default() };
        for r in &s.resources {
            let live = Live { id: r.address(), address: r.address(), attrs: desired(r, s), outputs: Map::new() };
            inv.live.insert(r.address(), Found { kind: r.kind, region: s.region.clone(), live });
        }
        inv
    }

    /// Whether `a` waits for `b`, both as the CLI prints step ids.
    fn has(edges: &[(StepId, StepId)], a: &str, b: &str) -> bool {
        edges.iter().any(|(x, y)| x.to_string() == a && y.to_string() == b)
    }

    #[test]
    fn groups_that_admit_each_other_get_their_rules_once_both_exist() {
        let s = stack(SRC);
        let inv = Inventory::default();
        let (nodes, edges) = graph(&s, &inv, &plan(&s, &inv));
        let peers = StepId { address: "security_group.alb".into(), phase: Phase::Peers };
        assert!(nodes.contains(&peers), "{nodes:?}");
        assert_eq!(peers.to_string(), "security_group.alb (peer rules)");
        assert!(has(&edges, "security_group.alb (peer rules)", "security_group.web"), "{edges:?}");
        assert!(has(&edges, "security_group.web (peer rules)", "security_group.alb"), "{edges:?}");
        // The groups themselves wait only for their VPC, so there is no cycle.
        assert!(has(&edges, "security_group.alb", "vpc.main"));
        assert!(!has(&edges, "security_group.alb", "security_group.web"), "{edges:?}");
    }

    #[test]
    fn destroy_drops_cross_group_rules_before_deleting_and_deletes_children_first() {
        let s = stack(SRC);
        let inv = applied(&s);
        let empty = Stack { resources: vec![], ..stack(SRC) };
        let (nodes, edges) = graph(&empty, &inv, &plan(&empty, &inv));
        assert!(has(&edges, "security_group.alb", "security_group.web (drop peer rules)"), "{edges:?}");
        assert!(has(&edges, "security_group.web", "security_group.alb (drop peer rules)"), "{edges:?}");
        assert!(has(&edges, "vpc.main", "subnet.a") && has(&edges, "vpc.main", "security_group.alb"), "{edges:?}");
        assert_eq!(nodes.len(), 6, "4 deletes and 2 rule steps: {nodes:?}");
    }

    #[test]
    fn what_aws_orders_without_a_reference_is_ordered_both_ways() {
        let src = format!(
            "{SRC}[subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\
             [internet_gateway.igw]\nvpc = \"vpc.main\"\n\
             [load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\n"
        );
        let s = stack(&src);
        let empty = Inventory::default();
        let (_, edges) = graph(&s, &empty, &plan(&s, &empty));
        assert!(has(&edges, "load_balancer.web", "internet_gateway.igw"), "{edges:?}");
        let inv = applied(&s);
        let gone = Stack { resources: vec![], ..stack(&src) };
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "internet_gateway.igw", "load_balancer.web"), "{edges:?}");
    }

    #[test]
    fn protection_is_found_before_a_destroy_or_a_replacement_and_kept_with_what_it_needs() {
        let src = format!(
            "{SRC}[subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\
             [load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\ndeletion_protection = true\n"
        );
        let s = stack(&src);
        let inv = applied(&s);
        let gone = Stack { resources: vec![], ..stack(&src) };
        let destroy = plan(&gone, &inv);
        let found = protected(&inv, &destroy);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "load_balancer.web");
        assert!(found[0].1.contains("deletion_protection = false"), "{}", found[0].1);
        // Replaced (internal forces it): refused the same way.
        let moved =
            stack(&src.replace("deletion_protection = true\n", "deletion_protection = true\ninternal = true\n"));
        assert_eq!(protected(&inv, &plan(&moved, &inv)).len(), 1);
        // Kept: the balancer and the subnets and VPC it needs; the groups go.
        let (rest, kept) = plan_keeping(&gone, &inv, &["load_balancer.web".to_owned()]);
        let kept: Vec<&str> = kept.iter().map(String::as_str).collect();
        assert_eq!(kept, ["load_balancer.web", "subnet.a", "subnet.b", "vpc.main"]);
        let deleted: Vec<&str> =
            rest.resources.iter().filter(|r| r.action == Action::Delete).map(|r| r.address.as_str()).collect();
        assert_eq!(deleted, ["security_group.alb", "security_group.web"]);
    }

    #[test]
    fn a_value_that_is_another_resources_output_orders_its_delete_first() {
        let s = stack(SRC);
        let mut inv = applied(&s);
        let arn = "arn:aws:ec2:eu-central-1:123456789012:subnet/subnet-0123456789abcdef0";
        inv.live.get_mut("subnet.a").unwrap().live.outputs.insert("arn".into(), json!(arn));
        inv.live.get_mut("security_group.web").unwrap().live.attrs["tags"] = json!({"uses": arn});
        let gone = Stack { resources: vec![], ..stack(SRC) };
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "subnet.a", "security_group.web"), "{edges:?}");
        assert!(!has(&edges, "subnet.a", "security_group.alb"), "{edges:?}");
        // Both ways round (each uses the other's output): one order, never a cycle.
        let vpc_arn = "arn:aws:ec2:eu-central-1:123456789012:vpc/vpc-0123456789abcdef0";
        inv.live.get_mut("vpc.main").unwrap().live.outputs.insert("arn".into(), json!(vpc_arn));
        inv.live.get_mut("subnet.a").unwrap().live.attrs["tags"] = json!({"uses": vpc_arn});
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "vpc.main", "subnet.a"), "the declared reference: {edges:?}");
        inv.live.get_mut("vpc.main").unwrap().live.attrs["tags"] = json!({"uses": arn});
        let (_, edges) = graph(&gone, &inv, &plan(&gone, &inv));
        assert!(has(&edges, "vpc.main", "subnet.a") && !has(&edges, "subnet.a", "vpc.main"), "{edges:?}");
    }

    #[test]
    fn a_replacement_made_new_first_moves_its_dependents_before_the_old_half_goes() {
        let src = format!(
            "{SRC}[subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\
             [load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\n\
             [target_group.web]\nvpc = \"vpc.main\"\nport = 8080\n\
             [listener.http]\nload_balancer = \"load_balancer.web\"\nport = 80\ntarget_group = \"target_group.web\"\n"
        );
        let old = stack(&src);
        let inv = applied(&old);
        let new = stack(&src.replace("port = 8080\n", "port = 8081\n"));
        let p = plan(&new, &inv);
        let (_, edges) = graph(&new, &inv, &p);
        // The new group, then the listener moves to it, then the old group goes.
        assert!(has(&edges, "target_group.web (old)", "target_group.web"), "{edges:?}");
        assert!(has(&edges, "listener.http", "target_group.web"), "{edges:?}");
        assert!(has(&edges, "target_group.web (old)", "listener.http"), "{edges:?}");
        assert!(!has(&edges, "target_group.web", "target_group.web (old)"), "no cycle: {edges:?}");
    }

    #[test]
    fn a_replacement_deletes_dependents_first_and_recreates_in_order() {
        let old = stack(SRC);
        let inv = applied(&old);
        let new = stack(&SRC.replacen("10.0.0.0/16", "10.1.0.0/16", 1).replace("10.0.1.0/24", "10.1.1.0/24"));
        let p = plan(&new, &inv);
        let (_, edges) = graph(&new, &inv, &p);
        // Old halves in reverse order, new halves in order, each new after its old.
        assert!(has(&edges, "vpc.main (old)", "subnet.a (old)"), "{edges:?}");
        assert!(has(&edges, "vpc.main", "vpc.main (old)") && has(&edges, "subnet.a", "vpc.main"), "{edges:?}");
        assert!(has(&edges, "subnet.a", "subnet.a (old)"), "{edges:?}");
        // The groups are replaced with the VPC (their vpc field forces it).
        assert!(p.resources.iter().all(|r| r.action == Action::Replace), "{p:?}");
        assert!(has(&edges, "vpc.main (old)", "security_group.alb (old)"), "{edges:?}");
        assert!(has(&edges, "security_group.alb (old)", "security_group.alb (drop peer rules)"), "{edges:?}");
    }
}
