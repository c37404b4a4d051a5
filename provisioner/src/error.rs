//! The typed error of one AWS operation: its class (decided from the SDK's error codes, never
//! from message text, with one scoped exception: [`Transient`]), the operation, the AWS code and
//! the message.

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// What the caller should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Throttling, eventual consistency (`DependencyViolation` while interfaces drain, a role
    /// not yet assumable), transport trouble: try again later.
    Retryable,
    /// The resource is not (yet, or any more) there: "already gone" for a delete, worth another
    /// try for anything else (an id right after its creation is not visible everywhere yet).
    NotFound,
    /// Anything else: reported.
    Fatal,
    /// Not possible yet, and nothing to fix: AWS allows it later (a Lambda@Edge function while
    /// AWS still removes its replicas). Reported as left, with the command that finishes it.
    Later,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    pub class: Class,
    /// The API operation (`CreateSubnet`) or what the engine was doing.
    pub op: String,
    /// The AWS error code, when AWS answered with one.
    pub code: Option<String>,
    pub message: String,
}

impl OpError {
    pub fn new(class: Class, op: impl Into<String>, message: impl Into<String>) -> Self {
        Self { class, op: op.into(), code: None, message: message.into() }
    }

    pub fn fatal(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Class::Fatal, op, message)
    }

    pub fn retryable(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Class::Retryable, op, message)
    }

    pub fn later(op: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(Class::Later, op, message)
    }

    /// Whether another attempt may succeed (not found included: see [`Class::NotFound`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self.class, Class::Retryable | Class::NotFound)
    }

    pub fn is_not_found(&self) -> bool {
        self.class == Class::NotFound
    }

    /// Whether AWS answered with this code.
    pub fn has_code(&self, code: &str) -> bool {
        self.code.as_deref() == Some(code)
    }
}

impl OpError {
    /// `op: code: message`.
    pub fn brief(&self) -> String {
        match &self.code {
            Some(c) if self.message.is_empty() => format!("{}: {c}", self.op),
            Some(c) => format!("{}: {c}: {}", self.op, self.message),
            None => format!("{}: {}", self.op, self.message),
        }
    }
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.brief())?;
        match self.class {
            Class::Retryable => f.write_str(" (still failing after retries)")?,
            Class::Later => f.write_str(LATER)?,
            _ => {}
        }
        Ok(())
    }
}

impl std::error::Error for OpError {}

/// How a step left for later ends its message.
const LATER: &str = " (left for later)";

/// How one AWS service names its errors: which codes mean "not found" and which mean "try
/// again" besides the throttling codes every service shares. Each service's module has one.
pub trait Codes {
    fn not_found(&self, code: &str) -> bool;
    fn retryable(&self, _code: &str) -> bool {
        false
    }
}

/// Codes every AWS service uses for "slow down" or "briefly unable to answer".
pub fn throttled(code: &str) -> bool {
    matches!(
        code,
        "RequestLimitExceeded"
            | "Throttling"
            | "ThrottlingException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "SlowDown"
            | "ServiceUnavailable"
            | "ServiceUnavailableException"
            | "Unavailable"
            | "InternalError"
            | "InternalFailure"
            | "InternalServerError"
            | "InternalServiceError"
    )
}

/// Classifies an SDK error by its code with the service's `codes`; transport failures and
/// timeouts are retryable.
pub fn classify<E, R>(codes: &dyn Codes, op: &str, e: SdkError<E, R>) -> OpError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = e.code().map(str::to_owned);
    let message = match e.message() {
        Some(m) => m.to_owned(),
        None if code.is_some() => String::new(),
        None => DisplayErrorContext(&e).to_string(),
    };
    let transient = matches!(e, SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_));
    let class = match code.as_deref() {
        Some(c) if codes.not_found(c) => Class::NotFound,
        Some(c) if throttled(c) || codes.retryable(c) => Class::Retryable,
        _ if transient => Class::Retryable,
        _ => Class::Fatal,
    };
    OpError { class, op: op.to_owned(), code, message }
}

/// An answer AWS gives while something it makes on the caller's behalf settles (a service-linked
/// role, a role's propagation, continuous backups being enabled), declared by the kind that
/// meets it: within `window` of the step's first attempt it is retried, after it it is fatal.
///
/// This is the one place where a message fragment may decide a class: AWS reuses codes such as
/// `InvalidParameterException` and `ValidationException` for permanent mistakes and for passing
/// states alike, and only the message tells them apart. The fragment is matched only for the
/// declared operation and code, so a permanent error under the same code stays fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transient {
    /// The operation as the kind names it in its errors (`CreateCluster`).
    pub op: &'static str,
    pub code: &'static str,
    /// Part of the message that marks the passing cause, when the code alone does not.
    pub fragment: Option<&'static str>,
    pub window: std::time::Duration,
    /// Where AWS's behaviour is recorded (the AWS provider's retry, AWS's documentation).
    pub source: &'static str,
}

impl Transient {
    /// `code` answered to `op`, retried for `minutes`.
    pub const fn new(op: &'static str, code: &'static str, minutes: u64, source: &'static str) -> Self {
        Self { op, code, fragment: None, window: std::time::Duration::from_secs(minutes * 60), source }
    }

    /// Only when the message holds `fragment`.
    pub const fn saying(self, fragment: &'static str) -> Self {
        Self { fragment: Some(fragment), ..self }
    }

    /// Whether `e` is this passing answer.
    pub fn matches(&self, e: &OpError) -> bool {
        e.op == self.op && e.has_code(self.code) && self.fragment.is_none_or(|f| e.message.contains(f))
    }
}

/// `e` as retryable when it is one of `transient` and the step began less than its window ago.
pub fn settle(e: OpError, transient: &[Transient], since: std::time::Duration) -> OpError {
    match transient.iter().find(|t| t.matches(&e)) {
        Some(t) if e.class == Class::Fatal && since < t.window => OpError { class: Class::Retryable, ..e },
        _ => e,
    }
}

/// For deletes: "already gone" is success.
pub fn gone_ok<T>(r: Result<T, OpError>) -> Result<(), OpError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_gone_for_a_delete_and_retried_otherwise() {
        let nf = OpError {
            class: Class::NotFound,
            op: "DeleteVpc".into(),
            code: Some("InvalidVpcID.NotFound".into()),
            message: String::new(),
        };
        assert!(nf.is_retryable() && nf.is_not_found() && nf.has_code("InvalidVpcID.NotFound"));
        assert_eq!(gone_ok::<()>(Err(nf.clone())), Ok(()));
        let fatal = OpError::fatal("CreateVpc", "bad cidr");
        assert!(!fatal.is_retryable());
        assert_eq!(gone_ok::<()>(Err(fatal.clone())), Err(fatal));
        assert_eq!(nf.brief(), "DeleteVpc: InvalidVpcID.NotFound");
        assert_eq!(OpError::retryable("X", "slow").to_string(), "X: slow (still failing after retries)");
    }

    #[test]
    fn a_transient_answer_is_retried_within_its_window_and_only_for_its_operation_code_and_message() {
        let slr = Transient::new("CreateCluster", "InvalidParameterException", 2, "test")
            .saying("Unable to assume the service linked role");
        let e = |op: &str, m: &str| OpError {
            class: Class::Fatal,
            op: op.into(),
            code: Some("InvalidParameterException".into()),
            message: m.into(),
        };
        let passing = e("CreateCluster", "Unable to assume the service linked role. Please verify ...");
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(settle(passing.clone(), &[slr], minute).class, Class::Retryable);
        assert_eq!(settle(passing.clone(), &[slr], 3 * minute).class, Class::Fatal, "after the window");
        assert_eq!(settle(e("CreateCluster", "Invalid capacity provider"), &[slr], minute).class, Class::Fatal);
        assert_eq!(
            settle(e("CreateService", "Unable to assume the service linked role"), &[slr], minute).class,
            Class::Fatal
        );
        assert_eq!(settle(passing, &[], minute).class, Class::Fatal);
    }
}
