//! EMULATION of CloudFront VPC origins (November 2024), which moto does not have: the proxy
//! answers CreateVpcOrigin, GetVpcOrigin, ListVpcOrigins, UpdateVpcOrigin, DeleteVpcOrigin and
//! the tagging calls on their ARNs as the CloudFront API reference documents them (XML shapes,
//! ETags and `If-Match`, `EntityNotFound`, `PreconditionFailed`). A create answers `Deploying`
//! and every later read `Deployed`, as AWS does after minutes; a delete is refused while a
//! distribution the proxy has seen written names the origin (`CannotDeleteEntityWhileInUse`).
//! What stays unproven: AWS's own checks of the load balancer (internal, in private subnets,
//! its security group), the network interfaces it makes, and how long each step really takes.

use axum::http::{HeaderMap, Method, Uri};
use std::collections::BTreeMap;
use std::sync::LazyLock;

const NS: &str = "http://cloudfront.amazonaws.com/doc/2020-05-31/";

struct Origin {
    arn: String,
    name: String,
    /// The inner XML of its `VpcOriginEndpointConfig`, as last written.
    config: String,
    tags: BTreeMap<String, String>,
    etag: u64,
    reads: u64,
    created: String,
}

/// The emulated VPC origins of one proxy.
#[derive(Default)]
pub struct VpcOrigins {
    by_id: BTreeMap<String, Origin>,
    made: u64,
    /// VPC origin ids named by the distributions last written (by distribution id).
    pub in_use: BTreeMap<String, String>,
}

/// An emulated answer: status, XML body, ETag.
pub type Answer = (u16, String, Option<String>);

static CONFIG: LazyLock<regex_lite::Regex> = LazyLock::new(|| {
    regex_lite::Regex::new(r"(?s)<VpcOriginEndpointConfig[^>]*>(.*?)</VpcOriginEndpointConfig>").unwrap()
});
static NAME: LazyLock<regex_lite::Regex> = LazyLock::new(|| regex_lite::Regex::new(r"<Name>([^<]*)</Name>").unwrap());
static ARN: LazyLock<regex_lite::Regex> = LazyLock::new(|| regex_lite::Regex::new(r"<Arn>([^<]*)</Arn>").unwrap());
static TAG: LazyLock<regex_lite::Regex> = LazyLock::new(|| {
    regex_lite::Regex::new(r"(?s)<Tag>\s*<Key>([^<]*)</Key>\s*(?:<Value>([^<]*)</Value>)?\s*</Tag>").unwrap()
});
static KEY: LazyLock<regex_lite::Regex> = LazyLock::new(|| regex_lite::Regex::new(r"<Key>([^<]*)</Key>").unwrap());
/// The VPC origin a distribution's origin names.
pub static VPC_ORIGIN_CONFIG: LazyLock<regex_lite::Regex> = LazyLock::new(|| {
    regex_lite::Regex::new(r"(?s)<VpcOriginConfig>.*?<VpcOriginId>([^<]*)</VpcOriginId>.*?</VpcOriginConfig>").unwrap()
});

fn error(status: u16, code: &str, message: &str) -> Answer {
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
    );
    (status, body, None)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn xml(id: &str, o: &Origin, status: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?><VpcOrigin xmlns=\"{NS}\"><Id>{id}</Id><Arn>{}</Arn><AccountId>123456789012</AccountId><Status>{status}</Status>\
         <CreatedTime>{}</CreatedTime><LastModifiedTime>{}</LastModifiedTime><VpcOriginEndpointConfig>{}</VpcOriginEndpointConfig></VpcOrigin>",
        o.arn,
        o.created,
        now(),
        o.config
    )
}

fn etag(o: &Origin) -> Option<String> {
    Some(format!("E{}", o.etag))
}

impl VpcOrigins {
    /// The answer to a VPC-origin call, or `None` when the call is not one (moto answers it).
    pub fn answer(&mut self, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Answer> {
        let path = uri.path();
        let query: BTreeMap<String, String> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
        let text = String::from_utf8_lossy(body);
        if path == "/2020-05-31/tagging" {
            let arn = query.get("Resource").filter(|r| r.contains(":vpcorigin/"))?;
            let Some((_, o)) = self.by_id.iter_mut().find(|(_, o)| &o.arn == arn) else {
                return Some(error(404, "EntityNotFound", "The VPC origin does not exist."));
            };
            return Some(match (method, query.get("Operation").map(String::as_str)) {
                (&Method::GET, _) => {
                    let items: String =
                        o.tags.iter().map(|(k, v)| format!("<Tag><Key>{k}</Key><Value>{v}</Value></Tag>")).collect();
                    (200, format!("<?xml version=\"1.0\"?><Tags xmlns=\"{NS}\"><Items>{items}</Items></Tags>"), None)
                }
                (&Method::POST, Some("Tag")) => {
                    for c in TAG.captures_iter(&text) {
                        o.tags.insert(c[1].to_owned(), c.get(2).map_or("", |m| m.as_str()).to_owned());
                    }
                    (204, String::new(), None)
                }
                (&Method::POST, Some("Untag")) => {
                    for c in KEY.captures_iter(&text) {
                        o.tags.remove(&c[1]);
                    }
                    (204, String::new(), None)
                }
                _ => error(400, "InvalidArgument", "unsupported tagging call"),
            });
        }
        let rest = path.strip_prefix("/2020-05-31/vpc-origin")?;
        let id = rest.strip_prefix('/').filter(|s| !s.is_empty()).map(str::to_owned);
        let if_match = headers.get("if-match").and_then(|v| v.to_str().ok()).map(str::to_owned);
        Some(match (method, id) {
            (&Method::POST, None) => {
                let Some(config) = CONFIG.captures(&text).map(|c| c[1].to_owned()) else {
                    return Some(error(400, "InvalidArgument", "VpcOriginEndpointConfig is required"));
                };
                let name = NAME.captures(&config).map(|c| c[1].to_owned()).unwrap_or_default();
                if self.by_id.values().any(|o| o.name == name) {
                    return Some(error(409, "EntityAlreadyExists", "A VPC origin with this name exists."));
                }
                let tags_xml = text.split("<VpcOriginEndpointConfig").next().unwrap_or("");
                let tags = TAG
                    .captures_iter(tags_xml)
                    .map(|c| (c[1].to_owned(), c.get(2).map_or("", |m| m.as_str()).to_owned()))
                    .collect();
                self.made += 1;
                let id = format!("vo_{:020}", self.made);
                let o = Origin {
                    arn: format!("arn:aws:cloudfront::123456789012:vpcorigin/{id}"),
                    name,
                    config,
                    tags,
                    etag: 1,
                    reads: 0,
                    created: now(),
                };
                let answer = (201, xml(&id, &o, "Deploying"), etag(&o));
                self.by_id.insert(id, o);
                answer
            }
            (&Method::GET, None) => {
                let items: String = self
                    .by_id
                    .iter()
                    .map(|(id, o)| {
                        format!(
                            "<VpcOriginSummary><Id>{id}</Id><Name>{}</Name><Status>Deployed</Status><CreatedTime>{}</CreatedTime>\
                             <LastModifiedTime>{}</LastModifiedTime><Arn>{}</Arn><AccountId>123456789012</AccountId>\
                             <OriginEndpointArn>{}</OriginEndpointArn></VpcOriginSummary>",
                            o.name,
                            o.created,
                            o.created,
                            o.arn,
                            ARN.captures(&o.config).map(|c| c[1].to_owned()).unwrap_or_default()
                        )
                    })
                    .collect();
                let body = format!(
                    "<?xml version=\"1.0\"?><VpcOriginList xmlns=\"{NS}\"><Marker></Marker><MaxItems>100</MaxItems><IsTruncated>false</IsTruncated>\
                     <Quantity>{}</Quantity><Items>{items}</Items></VpcOriginList>",
                    self.by_id.len()
                );
                (200, body, None)
            }
            (m, Some(id)) => {
                let in_use = self.in_use.values().any(|v| *v == id);
                let Some(o) = self.by_id.get_mut(&id) else {
                    return Some(error(404, "EntityNotFound", "The VPC origin does not exist."));
                };
                let stale = if_match.as_deref().is_some_and(|e| Some(e.to_owned()) != etag(o));
                match *m {
                    Method::GET => {
                        o.reads += 1;
                        (200, xml(&id, o, "Deployed"), etag(o))
                    }
                    Method::PUT if stale || if_match.is_none() => {
                        error(412, "PreconditionFailed", "The If-Match version is missing or not valid.")
                    }
                    Method::PUT => {
                        if let Some(c) = CONFIG.captures(&text) {
                            o.config = c[1].to_owned();
                        }
                        o.etag += 1;
                        (200, xml(&id, o, "Deploying"), etag(o))
                    }
                    Method::DELETE if stale || if_match.is_none() => {
                        error(412, "PreconditionFailed", "The If-Match version is missing or not valid.")
                    }
                    Method::DELETE if in_use => {
                        error(409, "CannotDeleteEntityWhileInUse", "A distribution uses this VPC origin.")
                    }
                    Method::DELETE => {
                        let answer = (202, xml(&id, o, "Deleting"), etag(o));
                        self.by_id.remove(&id);
                        answer
                    }
                    _ => error(400, "InvalidArgument", "unsupported VPC origin call"),
                }
            }
            _ => error(400, "InvalidArgument", "unsupported VPC origin call"),
        })
    }
}
