//! The registry of resource kinds, grouped by AWS service: one file per kind under its
//! service's folder, with that service's shared helpers (client, error codes, tags) beside
//! them; in its service's `mod.rs`, its `pub mod` line and its name in the `kinds!` list.

use crate::schema::Kind;
use std::sync::LazyLock;

/// Lists a service's kinds (their modules are declared beside it, outside the macro, where
/// rustfmt sees them: it does not follow a `mod` a macro declares).
macro_rules! kinds {
    ($($m:ident),* $(,)?) => {
        /// This service's kinds, in the order `docs` lists them.
        pub static KINDS: &[&$crate::schema::Kind] = &[$(&$m::KIND),*];
    };
}
pub(crate) use kinds;

/// What every service module needs once: the [`Service`](crate::provider::Service) impl that
/// lets a context build the client, and `err(op, e)` classifying the service's SDK errors by
/// its [`Codes`](crate::error::Codes).
macro_rules! service {
    ($client:ty, $codes:expr) => {
        impl $crate::provider::Service for $client {
            fn build(conf: &aws_config::SdkConfig) -> Self {
                Self::new(conf)
            }
        }

        /// An SDK error of this service, classified by its codes.
        pub fn err<E, R>(op: &str, e: aws_smithy_runtime_api::client::result::SdkError<E, R>) -> $crate::error::OpError
        where
            E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
            R: std::fmt::Debug,
        {
            $crate::error::classify(&$codes, op, e)
        }
    };
}
pub(crate) use service;

pub mod account;
pub mod application_autoscaling;
pub mod cloudfront;
pub mod cognito;
pub mod dynamodb;
pub mod ec2;
pub mod ecr;
pub mod ecs;
pub mod elbv2;
pub mod iam;
pub mod lambda;
pub mod logs;
pub mod s3;
pub mod sns;
pub mod ssm;
pub mod wafv2;

static ALL: LazyLock<Vec<&'static Kind>> = LazyLock::new(|| {
    [
        ec2::KINDS,
        application_autoscaling::KINDS,
        cloudfront::KINDS,
        cognito::KINDS,
        dynamodb::KINDS,
        ecr::KINDS,
        ecs::KINDS,
        elbv2::KINDS,
        iam::KINDS,
        lambda::KINDS,
        logs::KINDS,
        s3::KINDS,
        sns::KINDS,
        ssm::KINDS,
        wafv2::KINDS,
    ]
    .concat()
});

/// Every kind a stack may use, in the order `docs` lists them.
pub fn all() -> &'static [&'static Kind] {
    &ALL
}

pub fn find(name: &str) -> Option<&'static Kind> {
    all().iter().copied().find(|k| k.name == name)
}
