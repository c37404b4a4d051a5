//! `sns_topic`: an SNS topic named `<stack>-<name>`, with e-mail subscriptions (where Grafana's
//! alerts go: Grafana publishes with the host's role, no stored credential). AWS mails each new
//! address a link to confirm; until then the subscription is pending, and a pending one cannot
//! be removed (AWS drops it after three days).

use super::{err, set_tags, sns, tag_list, tags_of};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError};
use crate::provider::{known, same_set, Address, Cx, Found, Typed, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new(
    "sns_topic",
    "An SNS topic (<stack>-<name>) with e-mail subscriptions, each confirmed by its recipient.",
    &Topic,
)
.fields(&[
    Field::optional("display_name", FieldType::String, None, Update::InPlace, "The sender name of its e-mails."),
    Field::optional(
        "email_subscriptions",
        FieldType::List(&FieldType::String),
        None,
        Update::InPlace,
        "Addresses that receive what is published (each confirms once, from AWS's e-mail).",
    ),
    TAGS,
])
.outputs(&[("id", "The topic's ARN"), ("arn", "The topic's ARN"), ("name", "<stack>-<name>")])
.check(check)
.cost(cost, &[ALERT_EMAILS]);

fn check(r: &Resource, _: &Stack, d: &mut Diags) {
    let Some((Val::List(items), _)) = r.fields.get("email_subscriptions") else { return };
    for (v, span) in items {
        let Val::Str(a) = v else { continue };
        // A `${...}` is checked once filled in; the rest must look like an address.
        let plausible = a.contains("${") || a.split_once('@').is_some_and(|(u, h)| !u.is_empty() && h.contains('.'));
        if !plausible {
            d.error(
                "bad-email",
                span.clone(),
                format!("{}: `{a}` is not an e-mail address", r.address()),
                Some("write name@example.org".into()),
            );
        }
    }
}

const ALERT_EMAILS: crate::cost::UsageKey =
    crate::cost::UsageKey { name: "alert_emails", unit: "messages a month", doc: "messages published to each topic" };

/// One e-mail per message and subscription; the first 1,000 a month are free.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    let subscribers = cx.attrs::<Attrs>().map_or(0, |a| a.email_subscriptions.len()) as f64;
    vec![crate::cost::Part::new("e-mail notifications", "sns.email", cx.usage(&ALERT_EMAILS) * subscribers)]
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    display_name: Option<String>,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    email_subscriptions: Vec<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

/// A topic's e-mail subscriptions: (address, subscription ARN, or `None` while pending).
async fn subscriptions(cx: &Cx, arn: &str) -> Result<Vec<(String, Option<String>)>, OpError> {
    let mut out = Vec::new();
    let mut pages = sns(cx).list_subscriptions_by_topic().topic_arn(arn).into_paginator().send();
    while let Some(page) = pages.next().await {
        for s in page.map_err(|e| err("ListSubscriptionsByTopic", e))?.subscriptions() {
            if s.protocol() != Some("email") {
                continue;
            }
            let Some(endpoint) = s.endpoint() else { continue };
            let sub = s.subscription_arn().filter(|a| a.starts_with("arn:")).map(str::to_owned);
            out.push((endpoint.to_owned(), sub));
        }
    }
    Ok(out)
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    name: String,
}

struct Topic;

#[async_trait]
impl Typed for Topic {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let client = sns(cx);
        let prefix = format!("{}-", cx.stack);
        let mut arns = Vec::new();
        let mut pages = client.list_topics().into_paginator().send();
        while let Some(page) = pages.next().await {
            for t in page.map_err(|e| err("ListTopics", e))?.topics() {
                let Some(arn) = t.topic_arn() else { continue };
                if arn.rsplit(':').next().is_some_and(|n| n.starts_with(&prefix)) {
                    arns.push(arn.to_owned());
                }
            }
        }
        let mut out = Vec::new();
        for arn in arns {
            let tags = tags_of(cx, &arn).await?;
            if tags.get(STACK_TAG) != Some(&cx.stack) {
                continue;
            }
            let name = arn.rsplit(':').next().unwrap_or_default().to_owned();
            let address = Address::found(&tags, KIND.name, &name[prefix.len()..]);
            let attrs =
                client.get_topic_attributes().topic_arn(&arn).send().await.map_err(|e| err("GetTopicAttributes", e))?;
            let display_name = attrs.attributes().and_then(|a| a.get("DisplayName")).filter(|d| !d.is_empty()).cloned();
            let mut email_subscriptions: Vec<String> =
                subscriptions(cx, &arn).await?.into_iter().map(|(e, _)| e).collect();
            email_subscriptions.sort();
            let attrs = Attrs { display_name, email_subscriptions, tags };
            out.push(Found { id: arn.clone(), address, attrs, outputs: Outputs { arn, name } });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        // CreateTopic is idempotent by name: a rerun gets the same ARN back.
        let made = sns(cx)
            .create_topic()
            .name(format!("{}-{}", cx.stack, address.name()))
            .set_attributes(w.display_name.as_ref().map(|d| [("DisplayName".to_owned(), d.clone())].into()))
            .set_tags(Some(tag_list(&w.tags)?))
            .send()
            .await
            .map_err(|e| err("CreateTopic", e))?;
        let arn = made.topic_arn().ok_or_else(|| OpError::fatal("CreateTopic", "no topic ARN"))?.to_owned();
        let have = subscriptions(cx, &arn).await?;
        for e in w.email_subscriptions.iter().filter(|e| !have.iter().any(|(h, _)| h == *e)) {
            sns(cx)
                .subscribe()
                .topic_arn(&arn)
                .protocol("email")
                .endpoint(e)
                .send()
                .await
                .map_err(|e| err("Subscribe", e))?;
        }
        Ok(arn)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let client = sns(cx);
        if h.display_name != w.display_name {
            client
                .set_topic_attributes()
                .topic_arn(id)
                .attribute_name("DisplayName")
                .attribute_value(w.display_name.clone().unwrap_or_default())
                .send()
                .await
                .map_err(|e| err("SetTopicAttributes", e))?;
        }
        if !same_set(&h.email_subscriptions, &w.email_subscriptions) {
            let live = subscriptions(cx, id).await?;
            for e in w.email_subscriptions.iter().filter(|e| !live.iter().any(|(l, _)| l == *e)) {
                client
                    .subscribe()
                    .topic_arn(id)
                    .protocol("email")
                    .endpoint(e)
                    .send()
                    .await
                    .map_err(|e| err("Subscribe", e))?;
            }
            // A pending one has no ARN and SNS no call that removes it: it lapses after three
            // days, and until then the plan still shows it.
            let gone = live.iter().filter(|(l, _)| !w.email_subscriptions.contains(l)).filter_map(|(_, s)| s.as_ref());
            for sub in gone {
                gone_ok(client.unsubscribe().subscription_arn(sub).send().await.map_err(|e| err("Unsubscribe", e)))?;
            }
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, _: Option<&Attrs>) -> Result<(), OpError> {
        // Deleting a topic deletes its subscriptions, pending ones included.
        gone_ok(sns(cx).delete_topic().topic_arn(id).send().await.map_err(|e| err("DeleteTopic", e)))
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    /// An e-mail per message and address; 1,000 free, then $2 per 100,000.
    #[test]
    fn emails_after_the_free_thousand() {
        let b = priced("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[sns_topic.a]\nemail_subscriptions = [\"a@example.org\", \"b@example.org\"]\n[usage]\nalert_emails = 800\n");
        close(of(&b, "sns_topic.a").monthly, 600.0 * 0.00002);
    }
}
