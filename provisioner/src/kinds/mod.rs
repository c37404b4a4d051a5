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

#[cfg(test)]
mod shape {
    //! Every kind's typed attributes and outputs against its declaration: the one test that
    //! holds each kind's structs to its fields, so neither can change without the other.

    use serde_json::{json, Value};

    fn keys(v: &Value) -> Vec<String> {
        v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    #[test]
    fn every_kind_is_typed_and_its_types_are_its_declaration() {
        let mut wrong = Vec::new();
        for k in super::all() {
            let mut sample = crate::schema::sample(k.fields);
            let Some(shape) = k.ops.shape(&mut sample) else {
                wrong.push(format!("{}: attributes not typed", k.name));
                continue;
            };
            match shape {
                // A value of every declared field comes back as it went in: no field missing,
                // renamed or of another type, and none the declaration lacks.
                Ok((attrs, _)) if attrs != sample => {
                    wrong.push(format!("{}: {sample}\n  came back as {attrs}", k.name));
                }
                Ok((_, outputs)) => {
                    let mut declared: Vec<String> =
                        k.outputs.iter().map(|(o, _)| (*o).to_owned()).filter(|o| o != "id").collect();
                    declared.sort();
                    if keys(&outputs) != declared {
                        wrong.push(format!("{}: outputs {:?}, declared {declared:?}", k.name, keys(&outputs)));
                    }
                }
                Err(e) => wrong.push(format!("{}: {e}", k.name)),
            }
            let mut extra = sample.clone();
            extra["not_declared"] = json!(1);
            if k.ops.shape(&mut extra).is_some_and(|s| s.is_ok()) {
                wrong.push(format!("{}: takes a field it does not declare", k.name));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
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
