//! Waiting before trying again.

use std::time::Duration;

/// "Equal jitter": a random delay between half of `d` and `d`, so retries that failed
/// together do not come back together, yet none comes back much sooner than planned.
pub fn jittered(d: Duration) -> Duration {
    let millis = d.as_millis().max(2) as u64;
    Duration::from_millis(millis / 2 + rand::random::<u64>() % (millis / 2 + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_between_half_and_all_of_the_delay() {
        for _ in 0..1000 {
            let d = jittered(Duration::from_millis(400));
            assert!(d >= Duration::from_millis(200) && d <= Duration::from_millis(400));
        }
    }
}
