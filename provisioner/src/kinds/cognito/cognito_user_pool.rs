//! `cognito_user_pool`: a user pool named `<stack>-<name>` for people an administrator adds
//! (no self sign-up): a password policy, TOTP multi-factor optional or required, deletion
//! protection. Cognito resets every setting an update does not name, so an update names all.

use super::{err, idp, pools};
use crate::error::{gone_ok, OpError};
use crate::provider::{Address, Cx, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::types::{
    AdminCreateUserConfigType, DeletionProtectionType, PasswordPolicyType, SoftwareTokenMfaConfigType, UserPoolMfaType,
    UserPoolPolicyType, UserPoolType,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new("cognito_user_pool", "A Cognito user pool (<stack>-<name>) of people an administrator adds: password policy, TOTP MFA, deletion protection.", &Pool)
.fields(&[
        Field::optional("password_length", FieldType::Int { min: 8, max: 99 }, Some("14"), Update::InPlace, "Shortest password."),
        Field::optional(
            "password_symbols",
            FieldType::Bool,
            Some("true"),
            Update::InPlace,
            "Passwords need a symbol too (they always need upper and lower case letters and a digit).",
        ),
        Field::optional(
            "temporary_password_days",
            FieldType::Int { min: 1, max: 365 },
            Some("3"),
            Update::InPlace,
            "Days a generated first password stays valid.",
        ),
        Field::optional(
            "mfa",
            FieldType::Enum(&["off", "optional", "on"]),
            Some("\"optional\""),
            Update::InPlace,
            "TOTP (authenticator app) second factor: off, offered (optional) or required (on).",
        )
        .security(Security::Guard(|b, a| b == "on" && a != "on")),
        Field::optional(
            "deletion_protection",
            FieldType::Bool,
            Some("true"),
            Update::InPlace,
            "Refuse to delete the pool (and its users): set false and apply before a destroy.",
        ),
        TAGS,
    ])
.outputs(&[
        ("id", "The pool's id"),
        ("arn", "The pool's ARN"),
        ("issuer", "https://cognito-idp.<region>.amazonaws.com/<id>: the `iss` of its tokens"),
        ("jwks_url", "Where its signing keys are published"),
    ])
.cost(cost, &[COGNITO_MAU]);

const COGNITO_MAU: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "cognito_mau",
    unit: "users a month",
    doc: "people who sign in to each user pool in a month",
};

fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    vec![crate::cost::Part::new("monthly active users", "cognito.mau", cx.usage(&COGNITO_MAU))]
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    password_length: Option<i64>,
    password_symbols: Option<bool>,
    temporary_password_days: Option<i64>,
    mfa: Option<String>,
    deletion_protection: Option<bool>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

fn policy(w: &Attrs) -> UserPoolPolicyType {
    UserPoolPolicyType::builder()
        .password_policy(
            PasswordPolicyType::builder()
                .minimum_length(w.password_length.unwrap_or(14) as i32)
                .require_uppercase(true)
                .require_lowercase(true)
                .require_numbers(true)
                .require_symbols(w.password_symbols.unwrap_or(true))
                .temporary_password_validity_days(w.temporary_password_days.unwrap_or(3) as i32)
                .build(),
        )
        .build()
}

fn protection(w: &Attrs) -> DeletionProtectionType {
    if w.deletion_protection.unwrap_or(true) {
        DeletionProtectionType::Active
    } else {
        DeletionProtectionType::Inactive
    }
}

fn admin_only() -> AdminCreateUserConfigType {
    AdminCreateUserConfigType::builder().allow_admin_create_user_only(true).build()
}

/// MFA by authenticator app; Cognito takes the mode only once a method is enabled.
async fn set_mfa(cx: &Cx, id: &str, w: &Attrs) -> Result<(), OpError> {
    let mode = match w.mfa.as_deref().unwrap_or("optional") {
        "on" => UserPoolMfaType::On,
        "off" => UserPoolMfaType::Off,
        _ => UserPoolMfaType::Optional,
    };
    idp(cx)
        .set_user_pool_mfa_config()
        .user_pool_id(id)
        .software_token_mfa_configuration(
            SoftwareTokenMfaConfigType::builder().enabled(mode != UserPoolMfaType::Off).build(),
        )
        .mfa_configuration(mode)
        .send()
        .await
        .map_err(|e| err("SetUserPoolMfaConfig", e))?;
    Ok(())
}

fn attrs_of(p: &UserPoolType) -> Attrs {
    let pw = p.policies().and_then(|x| x.password_policy());
    Attrs {
        password_length: pw.and_then(|x| x.minimum_length()).map(i64::from),
        password_symbols: pw.map(|x| x.require_symbols()),
        temporary_password_days: pw.map(|x| i64::from(x.temporary_password_validity_days())),
        mfa: p.mfa_configuration().map(|m| m.as_str().to_ascii_lowercase()),
        deletion_protection: p.deletion_protection().map(|d| d == &DeletionProtectionType::Active),
        tags: p.user_pool_tags().cloned().unwrap_or_default().into_iter().collect(),
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: Option<String>,
    issuer: String,
    jwks_url: String,
}

/// The issuer of a pool's tokens, and where its keys are published (the emulator's own
/// address when one stands in for AWS: it serves the keys, but its tokens name AWS's issuer).
pub fn issuer_and_keys(cx: &Cx, id: &str) -> (String, String) {
    let issuer = format!("https://cognito-idp.{}.amazonaws.com/{id}", cx.region);
    let keys = match cx.endpoint_url() {
        Some(e) => format!("{}/{id}/.well-known/jwks.json", e.trim_end_matches('/')),
        None => format!("{issuer}/.well-known/jwks.json"),
    };
    (issuer, keys)
}

struct Pool;

#[async_trait]
impl Typed for Pool {
    type Attrs = Attrs;
    type Outputs = Outputs;

    fn protected(&self, have: &Attrs) -> Option<&'static str> {
        crate::provider::deletion_protected(have.deletion_protection)
    }
    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        Ok(pools(cx)
            .await?
            .into_iter()
            .filter_map(|(address, p)| {
                let id = p.id()?.to_owned();
                let (issuer, jwks_url) = issuer_and_keys(cx, &id);
                let outputs = Outputs { arn: p.arn().map(str::to_owned), issuer, jwks_url };
                Some(Found { id, address, attrs: attrs_of(&p), outputs })
            })
            .collect())
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
        let made = idp(cx)
            .create_user_pool()
            .pool_name(name)
            .policies(policy(w))
            .deletion_protection(protection(w))
            .admin_create_user_config(admin_only())
            .set_user_pool_tags(Some(w.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| err("CreateUserPool", e))?;
        let id = made
            .user_pool()
            .and_then(|p| p.id())
            .map(str::to_owned)
            .ok_or_else(|| OpError::fatal("CreateUserPool", "no id"))?;
        // The update sets everything again (it reads nothing of `have`).
        cx.born(&id, w);
        set_mfa(cx, &id, w).await?;
        Ok(id)
    }

    async fn update(&self, cx: &Cx, id: &str, _have: Option<&Attrs>, w: &Attrs) -> Result<(), OpError> {
        // MFA first: UpdateUserPool below names the same mode, which needs the method enabled.
        set_mfa(cx, id, w).await?;
        let mode = UserPoolMfaType::from(w.mfa.as_deref().unwrap_or("optional").to_ascii_uppercase().as_str());
        idp(cx)
            .update_user_pool()
            .user_pool_id(id)
            .policies(policy(w))
            .deletion_protection(protection(w))
            .admin_create_user_config(admin_only())
            .mfa_configuration(mode)
            .set_user_pool_tags(Some(w.tags.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| err("UpdateUserPool", e))?;
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        // Checked here too: an emulator may not enforce it, and the message says what to do.
        if have.is_some_and(|a| a.deletion_protection.unwrap_or(true)) {
            return Err(OpError::fatal(
                "DeleteUserPool",
                format!("{id} has deletion protection (its users would go with it): set deletion_protection = false on it and apply, then destroy"),
            ));
        }
        gone_ok(idp(cx).delete_user_pool().user_pool_id(id).send().await.map_err(|e| err("DeleteUserPool", e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{decode, encode};
    use serde_json::json;

    #[test]
    fn what_is_written_reads_back() {
        let want = json!({"password_length": 16, "password_symbols": false, "temporary_password_days": 2, "mfa": "on", "deletion_protection": false, "tags": {"a": "b"}});
        let w = decode::<Attrs>(&want).unwrap();
        let p = UserPoolType::builder()
            .policies(policy(&w))
            .deletion_protection(protection(&w))
            .mfa_configuration(UserPoolMfaType::On)
            .user_pool_tags("a", "b")
            .build();
        assert_eq!(encode(&attrs_of(&p)), want);
    }
}
