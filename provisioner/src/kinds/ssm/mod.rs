//! SSM Parameter Store: generated secrets, the client and its error codes; the instance kind
//! reads AWS's public parameters here (the current Amazon Linux 2023 AMI).

use crate::error::{Codes, OpError};
use crate::provider::Cx;

pub mod secret;

super::kinds!(secret);

/// The SSM client of the context's region.
pub fn ssm(cx: &Cx) -> aws_sdk_ssm::Client {
    cx.client::<aws_sdk_ssm::Client>()
}

struct SsmCodes;

impl Codes for SsmCodes {
    fn not_found(&self, code: &str) -> bool {
        matches!(code, "ParameterNotFound" | "ParameterVersionNotFound")
    }
}

super::service!(aws_sdk_ssm::Client, SsmCodes);

/// The value of parameter `name` (a public one such as
/// `/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64`).
pub async fn parameter(cx: &Cx, name: &str) -> Result<String, OpError> {
    let out = ssm(cx).get_parameter().name(name).send().await.map_err(|e| err("GetParameter", e))?;
    out.parameter()
        .and_then(|p| p.value())
        .map(str::to_owned)
        .ok_or_else(|| OpError::fatal("GetParameter", format!("{name} has no value")))
}
