//! The provisioner's one retry delay: exponential backoff with full jitter, used by every loop
//! that waits out AWS (step retries in the walk, throttled reads, the state lock).

use rand::RngExt;
use std::time::Duration;

/// Delays growing from `base`, doubling per attempt up to `max`, each drawn uniformly from
/// zero to that cap so many clients retrying together spread out.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, attempt: 0 }
    }

    /// The next delay: uniformly random in [0, min(max, base * 2^attempt)].
    pub fn next_delay(&mut self) -> Duration {
        let cap = self.base.saturating_mul(1u32 << self.attempt.min(16)).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        assert!(b.next_delay() <= Duration::from_millis(100));
        for _ in 0..50 {
            assert!(b.next_delay() <= Duration::from_millis(1000));
        }
    }
}
