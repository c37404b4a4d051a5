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

/// A stack for unit tests, which must be valid.
#[cfg(test)]
pub(crate) fn test_stack(src: &str) -> crate::stack::Stack {
    crate::stack::parse(all(), "t.toml", src, &std::collections::BTreeMap::new())
        .unwrap_or_else(|d| panic!("{:?}", d.items))
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Pricing one resource of a small stack by hand, for the kinds' own tests.

    use crate::cost::{of_stack, Breakdown, ResourceCost};

    /// The breakdown of a stack written in `src` (a valid stack file), with the embedded prices.
    pub fn priced(src: &str) -> Breakdown {
        of_stack(&super::test_stack(src))
    }

    /// One resource's cost from a breakdown.
    pub fn of<'a>(b: &'a Breakdown, address: &str) -> &'a ResourceCost {
        b.resources.iter().find(|r| r.address == address).unwrap_or_else(|| panic!("{address} not priced: {b:?}"))
    }

    /// Equal to a hundredth of a cent.
    #[track_caller]
    pub fn close(got: f64, want: f64) {
        assert!((got - want).abs() < 0.0001, "got {got}, want {want}");
    }
}
