//! WAFv2: web ACLs and their associations, and what they share: the client and WAF's error
//! codes. ACLs cannot be listed by tag: the stack's are named `<stack>-<name>` and carry their
//! address in their description ([`crate::provider::marker`]), which the list call returns, so
//! one list per region and scope finds them (tags are still read, to show and repair drift).

use crate::error::Codes;
use crate::provider::Cx;

pub mod waf_association;
pub mod waf_web_acl;

super::kinds!(waf_web_acl, waf_association);

/// The WAFv2 client of the context's region.
pub fn waf(cx: &Cx) -> aws_sdk_wafv2::Client {
    cx.client::<aws_sdk_wafv2::Client>()
}

struct WafCodes;

impl Codes for WafCodes {
    fn not_found(&self, code: &str) -> bool {
        code == "WAFNonexistentItemException"
    }

    /// A stale lock token (someone changed the ACL between our read and write), an ACL still
    /// associated while its association is being removed, a change still settling.
    fn retryable(&self, code: &str) -> bool {
        matches!(code, "WAFOptimisticLockException" | "WAFAssociatedItemException" | "WAFUnavailableEntityException")
    }
}

super::service!(aws_sdk_wafv2::Client, WafCodes);
