//! Login rate limits, per client address and per username (governor's keyed GCRA limiters).
//!
//! Every login attempt takes one cell from both buckets before any password is hashed, so a
//! flood costs the server no argon2 work. Per address: bursts of 10, then one attempt per 6 s;
//! per username: bursts of 5, then one per 12 s (a guesser gets at most ~300 tries an hour on one
//! account, whatever addresses it uses). The state is in memory, per instance.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys kept before idle ones are dropped (memory bound under a spray of addresses).
const MAX_KEYS: usize = 10_000;

pub struct LoginLimiter {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_user: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn quota(burst: u32, every: Duration) -> Quota {
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(every).unwrap_or_else(|| Quota::per_minute(burst)).allow_burst(burst)
}

impl Default for LoginLimiter {
    fn default() -> Self {
        Self::new(10, Duration::from_secs(6), 5, Duration::from_secs(12))
    }
}

impl LoginLimiter {
    pub fn new(ip_burst: u32, ip_every: Duration, user_burst: u32, user_every: Duration) -> Self {
        Self {
            by_ip: RateLimiter::keyed(quota(ip_burst, ip_every)),
            by_user: RateLimiter::keyed(quota(user_burst, user_every)),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one attempt for this address and username; `Err(seconds)` to wait when either is spent.
    pub fn check(&self, ip: IpAddr, username: &str) -> Result<(), u64> {
        if self.by_ip.len() > MAX_KEYS {
            self.by_ip.retain_recent();
        }
        if self.by_user.len() > MAX_KEYS {
            self.by_user.retain_recent();
        }
        let now = self.clock.now();
        let wait = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        self.by_ip.check_key(&ip).map_err(|n| wait(n.wait_time_from(now)))?;
        self.by_user.check_key(&username.to_string()).map_err(|n| wait(n.wait_time_from(now)))?;
        Ok(())
    }

    /// Takes one attempt for this address only (routes without a username, e.g. first-run setup).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), u64> {
        let now = self.clock.now();
        self.by_ip.check_key(&ip).map_err(|n| n.wait_time_from(now).as_secs().max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_the_burst_per_address_and_per_user() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60), 2, Duration::from_secs(60));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert!(limiter.check(a, "alice").is_ok());
        assert!(limiter.check(a, "alice").is_ok());
        let wait = limiter.check(b, "alice").unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limiter.check(a, "bob").is_ok());
        assert!(limiter.check(a, "carol").is_err(), "address spent");
        assert!(limiter.check(b, "dave").is_ok());
    }
}
