//! STRICT MODE of the test proxy: AWS behaviours moto does not have (eventual consistency,
//! propagation, service-linked roles made on first use, addresses draining, protection), played
//! on top of moto. Every rule is labelled with where AWS's behaviour is recorded, counts how
//! often it fired (a rule that never fires proves nothing), and is timed by one window: AWS's
//! seconds to minutes, scaled down the same for all.

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One rule: its name (what the counts are keyed by) and its source.
pub struct Rule {
    pub name: &'static str,
    pub source: &'static str,
}

pub const CONTINUOUS_BACKUPS: Rule = Rule {
    name: "continuous-backups-settling",
    source: "DynamoDB API reference, UpdateContinuousBackups: ContinuousBackupsUnavailableException; \
             terraform-provider-aws internal/service/dynamodb/table.go retries it for 20 minutes",
};
pub const ECS_CLUSTER_SLR: Rule = Rule {
    name: "ecs-service-linked-role",
    source: "terraform-provider-aws internal/service/ecs/cluster.go retryClusterCreate: \
             InvalidParameterException \"Unable to assume the service linked role\"",
};
pub const ECS_SERVICE_ROLE: Rule = Rule {
    name: "ecs-service-role-propagation",
    source: "terraform-provider-aws internal/service/ecs/service.go retryServiceCreate: InvalidParameterException \
             \"verify that the ECS service role being passed has the proper permissions\"",
};
pub const AAS_SLR: Rule = Rule {
    name: "autoscaling-service-linked-role",
    source: "terraform-provider-aws internal/service/appautoscaling/target.go and policy.go: ValidationException \
             \"Unable to assume IAM role\", FailedResourceAccessException while the role propagates",
};
pub const LAMBDA_ROLE: Rule = Rule {
    name: "lambda-role-propagation",
    source: "terraform-provider-aws internal/service/lambda/function.go: InvalidParameterValueException \
             \"The role defined for the function cannot be assumed by Lambda\" (IAM is eventually consistent)",
};
pub const INSTANCE_PROFILE: Rule = Rule {
    name: "instance-profile-propagation",
    source: "terraform-provider-aws internal/service/ec2/ec2_instance.go: InvalidParameterValue \
             \"Invalid IAM Instance Profile\" right after the profile is made",
};
pub const EC2_BY_ID: Rule = Rule {
    name: "ec2-new-id-not-yet-visible",
    source: "EC2 API reference, \"Eventual consistency in the Amazon EC2 API\": a call on an id just \
             returned may answer Invalid*.NotFound",
};
pub const EC2_LIST_LAG: Rule = Rule {
    name: "ec2-tag-filtered-list-lags",
    source: "EC2 API reference, \"Eventual consistency in the Amazon EC2 API\": describe calls may not \
             show a resource just made",
};
pub const IGW_FOR_PUBLIC_LB: Rule = Rule {
    name: "internet-facing-load-balancer-needs-gateway",
    source: "ELBv2 API reference, CreateLoadBalancer: InvalidSubnet \"VPC ... has no internet gateway\"",
};
pub const WAF_FRESH_RESOURCE: Rule = Rule {
    name: "waf-resource-not-yet-available",
    source: "terraform-provider-aws internal/service/wafv2/web_acl_association.go retries \
             WAFUnavailableEntityException",
};
pub const ENIS_DRAINING: Rule = Rule {
    name: "interfaces-draining",
    source: "EC2 API reference DeleteSecurityGroup/DeleteSubnet/DetachInternetGateway: DependencyViolation \
             while a deleted load balancer's, host's or task's interfaces and addresses are released; \
             terraform-provider-aws internal/service/ec2/vpc_security_group.go retries it",
};
pub const POOL_PROTECTION: Rule = Rule {
    name: "user-pool-deletion-protection",
    source: "Cognito API reference, DeleteUserPool with DeletionProtection ACTIVE: InvalidParameterException",
};

pub const DOMAIN_CREATING: Rule = Rule {
    name: "user-pool-domain-creating",
    source: "Cognito API reference, DescribeUserPoolDomain: Status CREATING until the hosted UI serves; \
             terraform-provider-aws internal/service/cognitoidp/user_pool_domain.go waits for ACTIVE",
};

/// Every rule, for reports.
pub const ALL: &[&Rule] = &[
    &CONTINUOUS_BACKUPS,
    &ECS_CLUSTER_SLR,
    &ECS_SERVICE_ROLE,
    &AAS_SLR,
    &LAMBDA_ROLE,
    &INSTANCE_PROFILE,
    &EC2_BY_ID,
    &EC2_LIST_LAG,
    &IGW_FOR_PUBLIC_LB,
    &WAF_FRESH_RESOURCE,
    &ENIS_DRAINING,
    &POOL_PROTECTION,
    &DOMAIN_CREATING,
];

/// EC2 creates whose new id the rules follow: (operation, the id's tag in the answer).
const EC2_MADE: &[(&str, &str)] = &[
    ("CreateVpc", "vpcId"),
    ("CreateSecurityGroup", "groupId"),
    ("CreateRouteTable", "routeTableId"),
    ("CreateInternetGateway", "internetGatewayId"),
    ("CreateNatGateway", "natGatewayId"),
    ("CreateVpcEndpoint", "vpcEndpointId"),
];

/// Tag-filtered EC2 describes that lag behind creates: (operation, the answer's set, the
/// item's own id tag).
const EC2_LISTS: &[(&str, &str, &str)] = &[
    ("DescribeVpcs", "vpcSet", "vpcId"),
    ("DescribeSubnets", "subnetSet", "subnetId"),
    ("DescribeSecurityGroups", "securityGroupInfo", "groupId"),
    ("DescribeRouteTables", "routeTableSet", "routeTableId"),
    ("DescribeInternetGateways", "internetGatewaySet", "internetGatewayId"),
    ("DescribeNatGateways", "natGatewaySet", "natGatewayId"),
    ("DescribeVpcEndpoints", "vpcEndpointSet", "vpcEndpointId"),
];

/// What one call looks like to the rules.
pub struct Seen<'a> {
    /// The SigV4 service (`ec2`, `dynamodb`, `lambda`, ...).
    pub service: &'a str,
    /// `CreateVpc`, or a JSON target's operation (`UpdateContinuousBackups`), or `METHOD /path`.
    pub op: &'a str,
    /// Query-protocol parameters.
    pub params: &'a BTreeMap<String, String>,
    /// JSON-protocol body.
    pub json: &'a serde_json::Value,
    pub path: &'a str,
    pub method: &'a str,
}

#[derive(Default)]
struct State {
    /// When each resource id (or table name, load balancer ARN) was made.
    born: HashMap<String, Instant>,
    /// When each passing condition began (a service-linked role being made, ...).
    since: HashMap<&'static str, Instant>,
    /// Roles made, and whether Lambda has refused one yet.
    roles: HashMap<String, bool>,
    /// Instance profiles made, and whether EC2 has refused one yet.
    profiles: HashMap<String, bool>,
    last_drain: Option<Instant>,
    subnet_vpc: HashMap<String, String>,
    attached: BTreeSet<String>,
    protected_pools: BTreeSet<String>,
    fired: BTreeMap<&'static str, u32>,
}

/// How long AWS takes to finish what it makes, scaled down the same for all (the bench's
/// "AWS's typical waits"): until then its describes say it is still on its way.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    /// A distribution `InProgress` (AWS: about 5 minutes).
    pub cloudfront: Duration,
    /// A load balancer `provisioning` (about 3 minutes).
    pub load_balancer: Duration,
    /// A NAT gateway `pending` (about 1.5 minutes).
    pub nat: Duration,
    /// An ECS service's rollout `IN_PROGRESS` (about 2 minutes).
    pub ecs: Duration,
}

impl Waits {
    /// AWS's typical waits with one minute played as `minute`.
    pub fn scaled(minute: Duration) -> Self {
        Self { cloudfront: minute * 5, load_balancer: minute * 3, nat: minute * 3 / 2, ecs: minute * 2 }
    }
}

pub struct Strict {
    on: std::sync::atomic::AtomicBool,
    /// AWS's waits, played when set.
    pub waits: Mutex<Option<Waits>>,
    /// How long AWS takes to settle, scaled down for tests.
    pub window: Duration,
    state: Mutex<State>,
}

impl Default for Strict {
    fn default() -> Self {
        Self {
            on: Default::default(),
            waits: Mutex::default(),
            window: Duration::from_millis(1500),
            state: Mutex::default(),
        }
    }
}

/// An AWS error answer in the protocol of `service` (`json`: an `x-amz-target` call).
pub fn error_answer(service: &str, json: bool, status: u16, code: &str, message: &str) -> (u16, Response, String) {
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('"', "&quot;");
    let (body, mut r) = if json {
        let b = serde_json::json!({"__type": code, "message": message}).to_string();
        (b, Response::builder().header("content-type", "application/x-amz-json-1.1"))
    } else if service == "lambda" {
        // REST-JSON: the error's type in a header.
        let b = serde_json::json!({"Type": "User", "message": message}).to_string();
        (b, Response::builder().header("x-amzn-errortype", code).header("content-type", "application/json"))
    } else if service == "s3" {
        let b = format!(
            "<Error><Code>{code}</Code><Message>{}</Message><RequestId>proxy</RequestId></Error>",
            esc(message)
        );
        (b, Response::builder())
    } else if service == "ec2" {
        let b = format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>proxy</RequestID></Response>",
            esc(message)
        );
        (b, Response::builder())
    } else {
        let b = format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>",
            esc(message)
        );
        (b, Response::builder().header("content-type", "text/xml"))
    };
    r = r.status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST));
    (status, r.body(Body::from(body.clone())).expect("response"), body)
}

/// The indexed values of a query parameter list (`Subnets.member.1`, `ResourceId.1`, ...).
fn list<'a>(params: &'a BTreeMap<String, String>, prefix: &str) -> Vec<&'a str> {
    params.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.as_str()).collect()
}

/// The first `<tag>value</tag>` in `xml`.
fn first<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find('<')? + start;
    Some(&xml[start..end])
}

impl Strict {
    pub fn turn_on(&self) {
        self.on.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn is_on(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// How often each rule fired.
    pub fn fired(&self) -> BTreeMap<&'static str, u32> {
        self.state.lock().unwrap().fired.clone()
    }

    /// Forgets what was made (after a moto reset); the counts stay.
    pub fn forget(&self) {
        let mut s = self.state.lock().unwrap();
        let fired = std::mem::take(&mut s.fired);
        *s = State { fired, ..State::default() };
    }

    /// The answer AWS would give instead of moto's, if a rule applies: `(rule, code, message)`.
    pub fn before(&self, c: &Seen<'_>) -> Option<(&'static str, &'static str, String)> {
        if !self.is_on() {
            return None;
        }
        let w = self.window;
        let now = Instant::now();
        let young = |t: Option<&Instant>| t.is_some_and(|t| now.duration_since(*t) < w);
        let mut s = self.state.lock().unwrap();
        // A condition that starts with the first call of its kind and passes after the window.
        let settling = |s: &mut State, key: &'static str| {
            let t = *s.since.entry(key).or_insert(now);
            now.duration_since(t) < w
        };
        let hit: Option<(&Rule, &'static str, String)> = match (c.service, c.op) {
            ("dynamodb", "UpdateContinuousBackups") => {
                let table = c.json["TableName"].as_str().unwrap_or_default();
                young(s.born.get(table)).then(|| {
                    (
                        &CONTINUOUS_BACKUPS,
                        "ContinuousBackupsUnavailableException",
                        format!("Backups are being enabled for the table: {table}. Please retry later"),
                    )
                })
            }
            ("ecs", "CreateCluster") => settling(&mut s, "ecs-slr").then(|| {
                (
                    &ECS_CLUSTER_SLR,
                    "InvalidParameterException",
                    "Unable to assume the service linked role. Please verify that the ECS service linked role exists."
                        .to_owned(),
                )
            }),
            ("ecs", "CreateService") => settling(&mut s, "ecs-service-role").then(|| {
                (
                    &ECS_SERVICE_ROLE,
                    "InvalidParameterException",
                    "Unable to assume role and validate the specified targetGroupArn. Please verify that the ECS \
                     service role being passed has the proper permissions."
                        .to_owned(),
                )
            }),
            ("application-autoscaling", "RegisterScalableTarget") => settling(&mut s, "aas-slr").then(|| {
                (
                    &AAS_SLR,
                    "ValidationException",
                    "Unable to assume IAM role: arn:aws:iam::123456789012:role/aws-service-role/ecs.application-\
                     autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService"
                        .to_owned(),
                )
            }),
            ("application-autoscaling", "PutScalingPolicy") => settling(&mut s, "aas-policy").then(|| {
                (&AAS_SLR, "FailedResourceAccessException", "Unable to read the scalable target's service.".to_owned())
            }),
            ("lambda", _) if c.method == "POST" && c.path == "/2015-03-31/functions" => {
                // IAM takes seconds to reach Lambda: the first function made with each role
                // made in this run is refused.
                let role = c.json["Role"].as_str().and_then(|a| a.rsplit('/').next()).unwrap_or_default();
                let first_use = s.roles.get_mut(role).is_some_and(|refused| !std::mem::replace(refused, true));
                first_use.then(|| {
                    (
                        &LAMBDA_ROLE,
                        "InvalidParameterValueException",
                        "The role defined for the function cannot be assumed by Lambda.".to_owned(),
                    )
                })
            }
            ("ec2", "RunInstances") => {
                // IAM takes about ten seconds to reach EC2, longer than any scaled window here:
                // the first use of each profile made in this run is refused.
                let profile = c.params.get("IamInstanceProfile.Name").cloned();
                let first_use = profile
                    .as_ref()
                    .and_then(|p| s.profiles.get_mut(p))
                    .is_some_and(|refused| !std::mem::replace(refused, true));
                first_use.then(|| {
                    (
                        &INSTANCE_PROFILE,
                        "InvalidParameterValue",
                        format!(
                            "Value ({}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
                            profile.as_deref().unwrap_or_default()
                        ),
                    )
                })
            }
            ("ec2", "AuthorizeSecurityGroupIngress" | "AuthorizeSecurityGroupEgress" | "RevokeSecurityGroupEgress") => {
                let id = c.params.get("GroupId").map_or("", |v| v.as_str());
                young(s.born.get(id))
                    .then(|| (&EC2_BY_ID, "InvalidGroup.NotFound", format!("The security group '{id}' does not exist")))
            }
            ("ec2", "AttachInternetGateway") => {
                let id = c.params.get("InternetGatewayId").map_or("", |v| v.as_str());
                young(s.born.get(id)).then(|| {
                    (
                        &EC2_BY_ID,
                        "InvalidInternetGatewayID.NotFound",
                        format!("The internetGateway ID '{id}' does not exist"),
                    )
                })
            }
            ("ec2", "CreateRoute" | "AssociateRouteTable") => {
                let id = c.params.get("RouteTableId").map_or("", |v| v.as_str());
                young(s.born.get(id)).then(|| {
                    (&EC2_BY_ID, "InvalidRouteTableID.NotFound", format!("The routeTable ID '{id}' does not exist"))
                })
            }
            ("ec2", "ModifyVpcAttribute") => {
                let id = c.params.get("VpcId").map_or("", |v| v.as_str());
                young(s.born.get(id))
                    .then(|| (&EC2_BY_ID, "InvalidVpcID.NotFound", format!("The vpc ID '{id}' does not exist")))
            }
            ("ec2", "ModifySubnetAttribute") => {
                let id = c.params.get("SubnetId").map_or("", |v| v.as_str());
                young(s.born.get(id))
                    .then(|| (&EC2_BY_ID, "InvalidSubnetID.NotFound", format!("The subnet ID '{id}' does not exist")))
            }
            ("elasticloadbalancing", "CreateLoadBalancer")
                if c.params.get("Scheme").map(String::as_str) != Some("internal") =>
            {
                let vpcs: BTreeSet<&String> =
                    list(c.params, "Subnets.member.").into_iter().filter_map(|sn| s.subnet_vpc.get(sn)).collect();
                vpcs.into_iter()
                    .find(|v| !s.attached.contains(*v))
                    .map(|v| (&IGW_FOR_PUBLIC_LB, "InvalidSubnet", format!("VPC {v} has no internet gateway")))
            }
            ("wafv2", "AssociateWebACL") => {
                let arn = c.json["ResourceArn"].as_str().unwrap_or_default();
                young(s.born.get(arn)).then(|| {
                    (
                        &WAF_FRESH_RESOURCE,
                        "WAFUnavailableEntityException",
                        "AWS WAF couldn't retrieve the resource that you requested. Retry your request.".to_owned(),
                    )
                })
            }
            ("ec2", "DeleteSecurityGroup" | "DeleteSubnet" | "DetachInternetGateway") => young(s.last_drain.as_ref())
                .then(|| {
                    (
                        &ENIS_DRAINING,
                        "DependencyViolation",
                        "resource has a dependent object (network interfaces or addresses being released)".to_owned(),
                    )
                }),
            ("cognito-idp", "DeleteUserPool") => {
                let id = c.json["UserPoolId"].as_str().unwrap_or_default();
                s.protected_pools.contains(id).then(|| {
                    (
                        &POOL_PROTECTION,
                        "InvalidParameterException",
                        "The user pool cannot be deleted because deletion protection is activated. Deletion \
                         protection must be inactivated first."
                            .to_owned(),
                    )
                })
            }
            _ => None,
        };
        let (rule, code, message) = hit?;
        *s.fired.entry(rule.name).or_default() += 1;
        Some((rule.name, code, message))
    }

    /// Learns from moto's successful answer (what was made, attached, protected) and plays the
    /// lag of tag-filtered lists on it.
    pub fn after(&self, c: &Seen<'_>, answer: &mut Bytes) {
        if !self.is_on() {
            return;
        }
        let now = Instant::now();
        let text = String::from_utf8_lossy(answer).into_owned();
        let waits = *self.waits.lock().unwrap();
        let mut s = self.state.lock().unwrap();
        if let Some(w) = waits {
            if let Some(t) = play_wait(&mut s.born, &w, c, &text, now) {
                *answer = Bytes::from(t);
                return;
            }
        }
        match (c.service, c.op) {
            ("dynamodb", "CreateTable") => {
                if let Some(t) = c.json["TableName"].as_str() {
                    s.born.insert(t.to_owned(), now);
                }
            }
            ("ec2", op) if EC2_MADE.iter().any(|(o, _)| *o == op) => {
                let tag = EC2_MADE.iter().find(|(o, _)| *o == op).map(|(_, t)| *t).unwrap_or_default();
                if let Some(id) = first(&text, tag) {
                    s.born.insert(id.to_owned(), now);
                }
            }
            ("ec2", "CreateSubnet") => {
                if let (Some(id), Some(vpc)) = (first(&text, "subnetId"), first(&text, "vpcId")) {
                    s.born.insert(id.to_owned(), now);
                    s.subnet_vpc.insert(id.to_owned(), vpc.to_owned());
                }
            }
            ("ec2", "AttachInternetGateway") => {
                if let Some(v) = c.params.get("VpcId") {
                    s.attached.insert(v.clone());
                }
            }
            ("ec2", "DetachInternetGateway") => {
                if let Some(v) = c.params.get("VpcId") {
                    s.attached.remove(v);
                }
            }
            ("elasticloadbalancing", "CreateLoadBalancer") => {
                if let Some(arn) = first(&text, "LoadBalancerArn") {
                    s.born.insert(arn.to_owned(), now);
                }
            }
            ("iam", "CreateRole") => {
                if let Some(name) = c.params.get("RoleName") {
                    s.roles.insert(name.clone(), false);
                }
            }
            ("iam", "CreateInstanceProfile") => {
                if let Some(name) = c.params.get("InstanceProfileName") {
                    s.profiles.insert(name.clone(), false);
                }
            }
            ("elasticloadbalancing", "DeleteLoadBalancer")
            | ("ec2", "TerminateInstances" | "DeleteNatGateway" | "ReleaseAddress")
            | ("ecs", "DeleteService") => s.last_drain = Some(now),
            ("cognito-idp", "CreateUserPoolDomain") => {
                if let Some(d) = c.json["Domain"].as_str() {
                    s.born.insert(format!("domain:{d}"), now);
                }
            }
            ("cognito-idp", "DescribeUserPoolDomain") => {
                let d = c.json["Domain"].as_str().unwrap_or_default();
                let young = s.born.get(&format!("domain:{d}")).is_some_and(|t| now.duration_since(*t) < self.window);
                if young && text.contains("\"ACTIVE\"") {
                    *s.fired.entry(DOMAIN_CREATING.name).or_default() += 1;
                    *answer = Bytes::from(text.replace("\"ACTIVE\"", "\"CREATING\""));
                }
            }
            ("cognito-idp", "CreateUserPool" | "UpdateUserPool") => {
                let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let id = c.json["UserPoolId"].as_str().or(answer["UserPool"]["Id"].as_str()).unwrap_or_default();
                if c.json["DeletionProtection"].as_str() == Some("ACTIVE") {
                    s.protected_pools.insert(id.to_owned());
                } else {
                    s.protected_pools.remove(id);
                }
            }
            ("ec2", op)
                if EC2_LISTS.iter().any(|(o, _, _)| *o == op)
                    && c.params.iter().any(|(k, v)| k.starts_with("Filter.") && v.starts_with("tag:")) =>
            {
                let (_, set, id) = EC2_LISTS.iter().find(|(o, _, _)| *o == op).copied().unwrap_or_default();
                let w = self.window;
                let hide = |x: &str| s.born.get(x).is_some_and(|t| now.duration_since(*t) < w);
                if let Some((kept, hidden)) = without_items(&text, set, id, &hide) {
                    if hidden > 0 {
                        *s.fired.entry(EC2_LIST_LAG.name).or_default() += 1;
                        *answer = Bytes::from(kept);
                    }
                }
            }
            _ => {}
        }
    }
}

/// AWS's waits (see [`Waits`]): records when a distribution, load balancer, NAT gateway or ECS
/// rollout began, and while it is younger than its wait, answers its describe as still on its
/// way. Returns the changed answer.
fn play_wait(born: &mut HashMap<String, Instant>, w: &Waits, c: &Seen<'_>, text: &str, now: Instant) -> Option<String> {
    let young = |born: &HashMap<String, Instant>, key: &str, wait: Duration| {
        born.get(key).is_some_and(|t| now.duration_since(*t) < wait)
    };
    match (c.service, c.op) {
        ("cloudfront", _) if c.method == "POST" && c.path == "/2020-05-31/distribution" => {
            born.insert(format!("wait:cf:{}", first(text, "Id")?), now);
            None
        }
        ("cloudfront", _) if c.method == "GET" && c.path.starts_with("/2020-05-31/distribution/") => {
            let id = c.path.split('/').nth(3)?;
            (young(born, &format!("wait:cf:{id}"), w.cloudfront) && text.contains("<Status>Deployed</Status>"))
                .then(|| text.replace("<Status>Deployed</Status>", "<Status>InProgress</Status>"))
        }
        ("elasticloadbalancing", "CreateLoadBalancer") => {
            born.insert(format!("wait:lb:{}", first(text, "LoadBalancerArn")?), now);
            None
        }
        ("elasticloadbalancing", "DescribeLoadBalancers") => {
            let arn = first(text, "LoadBalancerArn")?;
            young(born, &format!("wait:lb:{arn}"), w.load_balancer)
                .then(|| text.replace("<Code>active</Code>", "<Code>provisioning</Code>"))
        }
        ("ec2", "CreateNatGateway") => {
            born.insert(format!("wait:nat:{}", first(text, "natGatewayId")?), now);
            None
        }
        ("ec2", "DescribeNatGateways") => {
            let id = first(text, "natGatewayId")?;
            young(born, &format!("wait:nat:{id}"), w.nat)
                .then(|| text.replace("<state>available</state>", "<state>pending</state>"))
        }
        ("ecs", "CreateService" | "UpdateService") => {
            let name = c.json["serviceName"].as_str().or(c.json["service"].as_str())?;
            born.insert(format!("wait:ecs:{}", name.rsplit('/').next()?), now);
            None
        }
        ("ecs", "DescribeServices") => {
            let mut answer: serde_json::Value = serde_json::from_str(text).ok()?;
            let mut changed = false;
            for svc in answer["services"].as_array_mut()? {
                let name = svc["serviceName"].as_str().unwrap_or_default().to_owned();
                if young(born, &format!("wait:ecs:{name}"), w.ecs) {
                    svc["runningCount"] = serde_json::json!(0);
                    for d in svc["deployments"].as_array_mut().into_iter().flatten() {
                        d["rolloutState"] = serde_json::json!("IN_PROGRESS");
                        d["runningCount"] = serde_json::json!(0);
                    }
                    changed = true;
                }
            }
            changed.then(|| answer.to_string())
        }
        _ => None,
    }
}

/// `xml` without the top-level `<item>`s of `<set>` whose own `<id>` (the first in the item)
/// `hide` says; with how many were taken out. Items nest (rules, tags), so depth is counted.
pub fn without_items(xml: &str, set: &str, id: &str, hide: &dyn Fn(&str) -> bool) -> Option<(String, usize)> {
    let open = format!("<{set}>");
    let start = xml.find(&open)? + open.len();
    let end = xml.find(&format!("</{set}>"))?;
    let body = &xml[start..end];
    let (mut out, mut hidden, mut at) = (String::new(), 0, 0);
    while let Some(rel) = body[at..].find("<item>") {
        let from = at + rel;
        out.push_str(&body[at..from]);
        let (mut depth, mut i) = (0usize, from);
        loop {
            let next_open = body[i..].find("<item>").map(|p| p + i);
            let next_close = body[i..].find("</item>").map(|p| p + i)?;
            match next_open {
                Some(o) if o < next_close => {
                    depth += 1;
                    i = o + "<item>".len();
                }
                _ => {
                    depth -= 1;
                    i = next_close + "</item>".len();
                    if depth == 0 {
                        break;
                    }
                }
            }
        }
        let item = &body[from..i];
        if first(item, id).is_some_and(hide) {
            hidden += 1;
        } else {
            out.push_str(item);
        }
        at = i;
    }
    out.push_str(&body[at..]);
    Some((format!("{}{out}{}", &xml[..start], &xml[end..]), hidden))
}
