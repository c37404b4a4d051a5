//! The account the stack is applied in, for names AWS makes global across all accounts (S3
//! buckets, Cognito domain prefixes): a stable suffix unique to the account, so a stranger who
//! holds `<stack>-<name>` does not stop the apply, and the same account always asks for the
//! same name. No kind lives here.

use crate::error::{Codes, OpError};
use crate::provider::Cx;
use sha2::{Digest, Sha256};

struct StsCodes;

impl Codes for StsCodes {
    fn not_found(&self, _code: &str) -> bool {
        false
    }
}

super::service!(aws_sdk_sts::Client, StsCodes);

/// The suffix of global names in `account`: six hex digits of a hash of its id (the id itself
/// stays out of names).
pub fn suffix_of(account: &str) -> String {
    let digest = Sha256::digest(format!("provisioner global name:{account}").as_bytes());
    hex::encode(digest)[..6].to_owned()
}

/// The id of the account `cx` works in (one `GetCallerIdentity`, once per discovery pass).
pub async fn account_id(cx: &Cx) -> Result<String, OpError> {
    cx.once("account:id", || async {
        let me = cx
            .client::<aws_sdk_sts::Client>()
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| err("GetCallerIdentity", e))?;
        me.account().map(str::to_owned).ok_or_else(|| OpError::fatal("GetCallerIdentity", "no account in the answer"))
    })
    .await
}

/// The suffix of global names in the account `cx` works in.
pub async fn global_suffix(cx: &Cx) -> Result<String, OpError> {
    Ok(suffix_of(&account_id(cx).await?))
}

/// `name` with the account's suffix: what a global name is asked for as.
pub fn global(name: &str, suffix: &str) -> String {
    format!("{name}-{suffix}")
}

/// How many characters the suffix adds to a name (for the length checks at load).
pub const SUFFIX_LEN: usize = 7;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suffix_is_stable_per_account_and_differs_between_accounts() {
        assert_eq!(suffix_of("123456789012"), suffix_of("123456789012"));
        assert_ne!(suffix_of("123456789012"), suffix_of("210987654321"));
        assert_eq!(
            global("quake-prod-finops", &suffix_of("123456789012")).len(),
            "quake-prod-finops".len() + SUFFIX_LEN
        );
    }
}
