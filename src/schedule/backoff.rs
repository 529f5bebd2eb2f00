//! Exponential backoff for a failing repository, like Flux: 750ms, 1.5s, 3s, … up to 15 minutes.
use std::time::Duration;

/// Delay before the next probe of a key that failed `n` times in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failure.
    pub initial: Duration,
    /// The most it grows to.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(750),
            max: Duration::from_secs(15 * 60),
        }
    }
}

impl Backoff {
    /// The delay after `failures` consecutive failures (`failures >= 1`): `initial × 2^(failures-1)`, capped.
    pub fn delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1u32 << doublings)
            .map_or(self.max, |d| d.min(self.max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_750ms_to_15m() {
        let b = Backoff::default();
        let ms = |n| b.delay(n).as_millis();
        assert_eq!((ms(1), ms(2), ms(3), ms(4)), (750, 1500, 3000, 6000));
        assert_eq!(b.delay(11), Duration::from_secs(768));
        assert_eq!(b.delay(12), Duration::from_secs(900));
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(900));
    }
}
