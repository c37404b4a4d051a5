//! `cloudfront_origin_access_control`: how a distribution signs its requests to an S3 origin
//! (SigV4), so the bucket can stay private and grant reads to that distribution alone. It has no
//! tags: it is named `<stack>-<name>` and carries its address in its description.

use super::{cloudfront, err, etag, name_of};
use crate::error::{gone_ok, OpError};
use crate::provider::{address_in, marker, Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update};
use async_trait::async_trait;
use aws_sdk_cloudfront::types::{
    OriginAccessControlConfig, OriginAccessControlOriginTypes, OriginAccessControlSigningBehaviors,
    OriginAccessControlSigningProtocols,
};
use serde::{Deserialize, Serialize};

pub static KIND: Kind = Kind::new("cloudfront_origin_access_control", "How CloudFront signs its requests to a private origin (SigV4): the bucket grants reads to the distribution alone.", &Oac)
.fields(&[
        Field::optional(
            "origin_type",
            FieldType::Enum(&["s3", "lambda", "mediastore", "mediapackagev2"]),
            Some("\"s3\""),
            Update::InPlace,
            "What kind of origin it signs for.",
        ),
        Field::optional(
            "signing",
            FieldType::Enum(&["always", "no-override", "never"]),
            Some("\"always\""),
            Update::InPlace,
            "always: sign every request (the viewer's Authorization header is replaced); no-override: keep a viewer's own; never.",
        ),
    ])
.outputs(&[("id", "The origin access control's id")]);

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    origin_type: Option<String>,
    signing: Option<String>,
}

fn config(cx: &Cx, address: &str, w: &Attrs) -> Result<OriginAccessControlConfig, OpError> {
    OriginAccessControlConfig::builder()
        .name(name_of(cx, address))
        .description(marker(cx, address))
        .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
        .signing_behavior(OriginAccessControlSigningBehaviors::from(w.signing.as_deref().unwrap_or("always")))
        .origin_access_control_origin_type(OriginAccessControlOriginTypes::from(
            w.origin_type.as_deref().unwrap_or("s3"),
        ))
        .build()
        .map_err(|e| OpError::fatal("OriginAccessControlConfig", e.to_string()))
}

struct Oac;

#[async_trait]
impl Typed for Oac {
    type Attrs = Attrs;
    type Outputs = ();

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, ()>>, OpError> {
        if cx.region != cx.home {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut marker_next = None;
        loop {
            let page = cloudfront(cx)
                .list_origin_access_controls()
                .set_marker(marker_next.take())
                .send()
                .await
                .map_err(|e| err("ListOriginAccessControls", e))?;
            let Some(list) = page.origin_access_control_list() else { break };
            for s in list.items() {
                let Some(address) = address_in(cx, s.description()) else { continue };
                let attrs = Attrs {
                    origin_type: Some(s.origin_access_control_origin_type().as_str().to_owned()),
                    signing: Some(s.signing_behavior().as_str().to_owned()),
                };
                out.push(Found { id: s.id().to_owned(), address, attrs, outputs: () });
            }
            match list.next_marker() {
                Some(m) if list.is_truncated() => marker_next = Some(m.to_owned()),
                _ => break,
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        let made = cloudfront(cx)
            .create_origin_access_control()
            .origin_access_control_config(config(cx, &address.to_string(), want)?)
            .send()
            .await
            .map_err(|e| err("CreateOriginAccessControl", e))?;
        made.origin_access_control()
            .map(|o| o.id().to_owned())
            .ok_or_else(|| OpError::fatal("CreateOriginAccessControl", "no id in the answer"))
    }

    async fn update(&self, cx: &Cx, id: &str, _have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let got = cloudfront(cx)
            .get_origin_access_control()
            .id(id)
            .send()
            .await
            .map_err(|e| err("GetOriginAccessControl", e))?;
        let address = got
            .origin_access_control()
            .and_then(|o| o.origin_access_control_config())
            .and_then(|c| c.description())
            .and_then(|d| address_in(cx, d))
            .ok_or_else(|| OpError::fatal("GetOriginAccessControl", format!("{id} is not this stack's")))?;
        cloudfront(cx)
            .update_origin_access_control()
            .id(id)
            .if_match(etag("GetOriginAccessControl", got.e_tag())?)
            .origin_access_control_config(config(cx, &address, want)?)
            .send()
            .await
            .map_err(|e| err("UpdateOriginAccessControl", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, _have: Option<&Attrs>) -> Result<(), OpError> {
        let got = match cloudfront(cx)
            .get_origin_access_control()
            .id(id)
            .send()
            .await
            .map_err(|e| err("GetOriginAccessControl", e))
        {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        gone_ok(
            cloudfront(cx)
                .delete_origin_access_control()
                .id(id)
                .if_match(etag("GetOriginAccessControl", got.e_tag())?)
                .send()
                .await
                .map_err(|e| err("DeleteOriginAccessControl", e))
                .map(|_| ()),
        )
    }
}
