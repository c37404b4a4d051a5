//! `instance`: an EC2 host. Its AMI comes from an SSM public parameter (Amazon Linux 2023 by
//! default), read when the host is made and recorded in a tag, so a new AMI release is not a
//! change but another parameter is; IMDSv2 required; no key pair (reached through SSM Session
//! Manager); user data from a file; a gp3 root volume that grows in place. A changed user data
//! file replaces the host, the new one made before the old one goes.

use super::{address_of, ec2, err, owned, set_tags, tagged};
use crate::error::{gone_ok, OpError, Transient};
use crate::provider::{known, null_as_empty, same_set, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceType, ResourceType, Tag, TagSpecification,
    VolumeType,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The tag recording which SSM parameter gave the host its AMI.
const AMI_TAG: &str = "provisioner:ami-parameter";
/// Amazon Linux 2023, x86_64: the current AMI, as AWS publishes it.
pub const AL2023: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// An instance profile made moments ago is not yet visible to EC2 (IAM is eventually
/// consistent).
const TRANSIENT: &[Transient] = &[Transient::new(
    "RunInstances",
    "InvalidParameterValue",
    2,
    "terraform-provider-aws internal/service/ec2/ec2_instance.go: create retry",
)
.saying("Invalid IAM Instance Profile")];

pub static KIND: Kind = Kind::new(
    "instance",
    "An EC2 host: AMI from an SSM public parameter, IMDSv2 only, no key pair, user data from a file.",
    &Instance,
)
.fields(&[
    Field::optional(
        "ami_parameter",
        FieldType::String,
        Some("\"/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64\""),
        Update::Replace,
        "SSM parameter naming the AMI (read when the host is made; a newer AMI later is not a change).",
    ),
    Field::required("instance_type", FieldType::String, Update::Replace, "Instance type, e.g. \"t3.small\"."),
    Field::required("subnet", FieldType::Ref(&["subnet"]), Update::Replace, "The subnet."),
    Field::optional(
        "security_groups",
        FieldType::List(&FieldType::Ref(&["security_group"])),
        None,
        Update::InPlace,
        "Security groups.",
    ),
    Field::optional(
        "instance_profile",
        FieldType::Ref(&["iam_instance_profile"]),
        None,
        Update::InPlace,
        "The instance profile holding the host's role (changed on the running host).",
    ),
    Field::optional(
        "user_data",
        FieldType::TextFile,
        None,
        Update::Replace,
        "cloud-config file, relative to the stack file (a change replaces the host, the new one first).",
    ),
    Field::optional(
        "root_volume_gb",
        FieldType::Int { min: 8, max: 16384 },
        Some("20"),
        Update::InPlace,
        "Size of the gp3 root volume; grows in place (EBS cannot shrink a volume).",
    ),
    TAGS,
])
.outputs(&[
    ("id", "Instance id (i-...)"),
    ("private_ip", "Private IPv4 address"),
    ("public_ip", "Public IPv4 address (when the subnet gives one)"),
    ("availability_zone", "Full zone name"),
    ("image_id", "The AMI it was made from"),
])
.normalize(normalize)
.cost(cost, &[])
// A host's public address needs the VPC's gateway, which cannot be detached while
// addresses are mapped.
.after(&["internet_gateway"])
.transient(TRANSIENT)
.create_before_delete();

/// The instance type by the hour, its gp3 root volume, and a public IPv4 address when its
/// subnet hands them out.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::Part;
    let Some(a) = cx.attrs::<Attrs>() else { return Vec::new() };
    let ty = &a.instance_type;
    let mut parts = vec![
        Part::hourly(cx, format!("instance ({ty})"), format!("ec2.instance.{ty}"), 1.0),
        Part::new("root volume (gp3)", "ebs.gp3", f64::from(a.root_gb())),
    ];
    let public = cx.other(&a.subnet).and_then(|s| s.get("public_ip_on_launch")?.as_bool());
    if public == Some(true) {
        parts.push(crate::cost::parts::public_ipv4(cx, "from its subnet", 1.0));
    }
    parts
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    ami_parameter: Option<String>,
    instance_type: String,
    subnet: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    security_groups: Vec<String>,
    instance_profile: Option<String>,
    user_data: Option<String>,
    root_volume_gb: Option<i32>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    fn ami_parameter(&self) -> &str {
        self.ami_parameter.as_deref().unwrap_or(AL2023)
    }

    fn root_gb(&self) -> i32 {
        self.root_volume_gb.unwrap_or(20)
    }
}

fn normalize(v: &mut Value) {
    match v.get_mut("security_groups") {
        Some(Value::Array(a)) => a.sort_by_key(Value::to_string),
        Some(x) => *x = json!([]),
        None => {}
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    private_ip: Option<String>,
    public_ip: Option<String>,
    availability_zone: Option<String>,
    image_id: Option<String>,
}

struct Instance;

/// Gives the running host `profile` (or none) through its profile association: replaced in
/// place where one exists, as EC2 allows without stopping the host.
async fn set_profile(cx: &Cx, id: &str, profile: Option<&str>) -> Result<(), OpError> {
    let found = ec2(cx)
        .describe_iam_instance_profile_associations()
        .filters(Filter::builder().name("instance-id").values(id).build())
        .send()
        .await
        .map_err(|e| err("DescribeIamInstanceProfileAssociations", e))?;
    let current = found
        .iam_instance_profile_associations()
        .iter()
        .find(|a| a.state().is_some_and(|s| matches!(s.as_str(), "associated" | "associating")))
        .and_then(|a| a.association_id())
        .map(str::to_owned);
    let spec = |p: &str| IamInstanceProfileSpecification::builder().name(p).build();
    match (current, profile) {
        (Some(a), Some(p)) => {
            ec2(cx)
                .replace_iam_instance_profile_association()
                .association_id(a)
                .iam_instance_profile(spec(p))
                .send()
                .await
                .map_err(|e| err("ReplaceIamInstanceProfileAssociation", e))?;
        }
        (Some(a), None) => {
            ec2(cx)
                .disassociate_iam_instance_profile()
                .association_id(a)
                .send()
                .await
                .map_err(|e| err("DisassociateIamInstanceProfile", e))?;
        }
        (None, Some(p)) => {
            ec2(cx)
                .associate_iam_instance_profile()
                .instance_id(id)
                .iam_instance_profile(spec(p))
                .send()
                .await
                .map_err(|e| err("AssociateIamInstanceProfile", e))?;
        }
        (None, None) => {}
    }
    Ok(())
}

/// The root volume (id, size) of each instance, one call for all of them.
async fn root_volumes(cx: &Cx, ids: &[String]) -> Result<HashMap<String, (String, i32)>, OpError> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let filter = Filter::builder().name("attachment.instance-id").set_values(Some(ids.to_vec())).build();
    let mut pages = ec2(cx).describe_volumes().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        for v in page.map_err(|e| err("DescribeVolumes", e))?.volumes() {
            for a in v.attachments() {
                if let (Some(i), Some(vid)) = (a.instance_id(), v.volume_id()) {
                    out.insert(i.to_owned(), (vid.to_owned(), v.size().unwrap_or_default()));
                }
            }
        }
    }
    Ok(out)
}

/// The instance profile each instance holds now (by name, the profile's id here), one call for
/// all: its association is what changes in place, and what AWS reports.
async fn profiles(cx: &Cx, ids: &[String]) -> Result<HashMap<String, String>, OpError> {
    let mut out = HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let filter = Filter::builder().name("instance-id").set_values(Some(ids.to_vec())).build();
    let mut pages = ec2(cx).describe_iam_instance_profile_associations().filters(filter).into_paginator().send();
    while let Some(page) = pages.next().await {
        for a in page.map_err(|e| err("DescribeIamInstanceProfileAssociations", e))?.iam_instance_profile_associations()
        {
            let live = a.state().is_some_and(|s| matches!(s.as_str(), "associated" | "associating"));
            // The profile's ARN ends with its name.
            let name = a.iam_instance_profile().and_then(|p| p.arn()).and_then(|arn| arn.rsplit('/').next());
            if let (true, Some(i), Some(n)) = (live, a.instance_id(), name) {
                out.insert(i.to_owned(), n.to_owned());
            }
        }
    }
    Ok(out)
}

async fn user_data(cx: &Cx, id: &str) -> Result<Option<String>, OpError> {
    let out = ec2(cx)
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .map_err(|e| err("DescribeInstanceAttribute", e))?;
    let Some(b64) = out.user_data().and_then(|u| u.value()) else { return Ok(None) };
    let bytes = aws_smithy_types::base64::decode(b64)
        .map_err(|e| OpError::fatal("DescribeInstanceAttribute", format!("user data of {id} is not base64: {e}")))?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

#[async_trait]
impl Typed for Instance {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        if !tagged(cx, &["instance"]).await? {
            return Ok(Vec::new());
        }
        let alive = Filter::builder()
            .name("instance-state-name")
            .set_values(Some(["pending", "running", "stopping", "stopped"].map(str::to_owned).to_vec()));
        let mut found = Vec::new();
        let mut pages = ec2(cx).describe_instances().filters(owned(cx)).filters(alive.build()).into_paginator().send();
        while let Some(page) = pages.next().await {
            for r in page.map_err(|e| err("DescribeInstances", e))?.reservations() {
                found.extend(r.instances().iter().cloned());
            }
        }
        let ids: Vec<String> = found.iter().filter_map(|i| i.instance_id().map(str::to_owned)).collect();
        let volumes = root_volumes(cx, &ids).await?;
        let profiles = profiles(cx, &ids).await?;
        let mut out = Vec::new();
        for i in found {
            let (Some(id), Some(address)) = (i.instance_id(), address_of(i.tags())) else { continue };
            let mut tags = super::tags_of(i.tags());
            tags.remove(AMI_TAG);
            let parameter = i.tags().iter().find(|t| t.key() == Some(AMI_TAG)).and_then(|t| t.value());
            let mut groups: Vec<String> =
                i.security_groups().iter().filter_map(|g| g.group_id().map(str::to_owned)).collect();
            groups.sort();
            let profile = profiles.get(id);
            let owned = |s: Option<&str>| s.map(str::to_owned);
            let outputs = Outputs {
                private_ip: owned(i.private_ip_address()),
                public_ip: owned(i.public_ip_address()),
                availability_zone: owned(i.placement().and_then(|p| p.availability_zone())),
                image_id: owned(i.image_id()),
            };
            let attrs = Attrs {
                ami_parameter: owned(parameter),
                instance_type: i.instance_type().map(|t| t.as_str()).unwrap_or_default().to_owned(),
                subnet: i.subnet_id().unwrap_or_default().to_owned(),
                security_groups: groups,
                instance_profile: profile.cloned(),
                user_data: user_data(cx, id).await?,
                root_volume_gb: volumes.get(id).map(|v| v.1),
                tags,
            };
            out.push(Found { id: id.to_owned(), address, attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, _: Address<'_>, w: &Attrs, token: &str) -> Result<String, OpError> {
        let image = crate::kinds::ssm::parameter(cx, w.ami_parameter()).await?;
        let images = ec2(cx).describe_images().image_ids(&image).send().await.map_err(|e| err("DescribeImages", e))?;
        let root = images.images().first().and_then(|i| i.root_device_name()).unwrap_or("/dev/xvda").to_owned();
        let mut tags = w.tags.clone();
        tags.insert(AMI_TAG.into(), w.ami_parameter().to_owned());
        let spec = |rt: ResourceType| {
            TagSpecification::builder()
                .resource_type(rt)
                .set_tags(Some(tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()))
                .build()
        };
        let out = ec2(cx)
            .run_instances()
            .image_id(&image)
            .instance_type(InstanceType::from(w.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .subnet_id(&w.subnet)
            .set_security_group_ids((!w.security_groups.is_empty()).then(|| w.security_groups.clone()))
            .set_iam_instance_profile(
                w.instance_profile.as_ref().map(|p| IamInstanceProfileSpecification::builder().name(p).build()),
            )
            .set_user_data(w.user_data.as_ref().map(|u| aws_smithy_types::base64::encode(u.as_bytes())))
            .block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(root)
                    .ebs(
                        EbsBlockDevice::builder()
                            .volume_size(w.root_gb())
                            .volume_type(VolumeType::Gp3)
                            .encrypted(true)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // One hop: the host's containers share its network (`--network host`), and
                    // a container on a bridge network, one hop further, gets no credentials.
                    .http_put_response_hop_limit(1)
                    .build(),
            )
            .tag_specifications(spec(ResourceType::Instance))
            .tag_specifications(spec(ResourceType::Volume))
            .client_token(token)
            .send()
            .await
            .map_err(|e| err("RunInstances", e))?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| OpError::fatal("RunInstances", "no instance id"))?
            .to_owned();
        // Everything declared is set by RunInstances itself.
        cx.born(&id, w);
        ec2(cx)
            .wait_until_instance_running()
            .instance_ids(&id)
            .wait(Duration::from_secs(600))
            .await
            .map_err(|e| OpError::retryable("wait InstanceRunning", format!("{id}: {e}")))?;
        Ok(id)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        if !same_set(&h.security_groups, &w.security_groups) {
            ec2(cx)
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(w.security_groups.clone()))
                .send()
                .await
                .map_err(|e| err("ModifyInstanceAttribute", e))?;
        }
        if h.instance_profile != w.instance_profile {
            set_profile(cx, id, w.instance_profile.as_deref()).await?;
        }
        if h.root_gb() != w.root_gb() {
            if w.root_gb() < h.root_gb() {
                return Err(OpError::fatal(
                    "ModifyVolume",
                    format!("{id}: EBS cannot shrink the root volume from {} to {} GB", h.root_gb(), w.root_gb()),
                ));
            }
            let volumes = root_volumes(cx, &[id.to_owned()]).await?;
            let (vol, _) =
                volumes.get(id).ok_or_else(|| OpError::fatal("ModifyVolume", format!("{id} has no root volume")))?;
            ec2(cx)
                .modify_volume()
                .volume_id(vol)
                .size(w.root_gb())
                .send()
                .await
                .map_err(|e| err("ModifyVolume", e))?;
        }
        // The AMI tag is the kind's own: neither side shows it, so it stays.
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        gone_ok(ec2(cx).terminate_instances().instance_ids(id).send().await.map_err(|e| err("TerminateInstances", e)))?;
        // Its network interface holds the subnet and security groups until it is gone.
        ec2(cx)
            .wait_until_instance_terminated()
            .instance_ids(id)
            .wait(Duration::from_secs(600))
            .await
            .map_err(|e| OpError::retryable("wait InstanceTerminated", format!("{id}: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// t3.small $0.024 an hour, gp3 $0.0952 a GB-month, a public address only from a subnet
    /// that gives one.
    #[test]
    fn type_volume_and_a_public_address_from_the_subnet() {
        let b = priced(
            "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.pub]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n[subnet.priv]\nvpc = \"vpc.v\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n[instance.p]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.pub\"\nroot_volume_gb = 30\n\
             [instance.q]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.priv\"\n",
        );
        close(of(&b, "instance.p").monthly, 17.52 + 30.0 * 0.0952 + 3.65);
        close(of(&b, "instance.q").monthly, 17.52 + 20.0 * 0.0952);
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.pub]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n[subnet.priv]\nvpc = \"vpc.v\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n[instance.x]\ninstance_type = \"x9.huge\"\nsubnet = \"subnet.priv\"\n");
        assert!(b.unpriced.iter().any(|u| u.contains("ec2.instance.x9.huge")), "{:?}", b.unpriced);
        close(b.monthly, 20.0 * 0.0952);
    }
}
