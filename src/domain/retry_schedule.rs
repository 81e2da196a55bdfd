//! The retry schedule: how long to wait before each retry.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The delays before the first, second, ... retry. An event gets one attempt plus one per delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

/// Why a schedule string is refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidSchedule {
    /// A part is not a duration.
    #[error("{0:?} is not a duration (write it like 30s, 5m, 2h)")]
    Duration(String),
    /// A delay under a millisecond (queue TTLs are whole milliseconds).
    #[error("a retry delay must be at least 1ms, not {0:?}")]
    TooShort(String),
    /// A delay over the largest TTL RabbitMQ takes.
    #[error("a retry delay must be under 24 days, not {0:?}")]
    TooLong(String),
}

impl FromStr for RetrySchedule {
    type Err = InvalidSchedule;

    /// Comma-separated durations; an empty string means no retries.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut delays = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let delay = humantime::parse_duration(part)
                .map_err(|_| InvalidSchedule::Duration(part.to_owned()))?;
            if delay < Duration::from_millis(1) {
                return Err(InvalidSchedule::TooShort(part.to_owned()));
            }
            if delay.as_millis() > u128::from(i32::MAX as u32) {
                return Err(InvalidSchedule::TooLong(part.to_owned()));
            }
            delays.push(Duration::from_millis(delay.as_millis() as u64));
        }
        Ok(RetrySchedule(delays))
    }
}

impl fmt::Display for RetrySchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|d| compact(*d)).collect();
        f.write_str(&parts.join(","))
    }
}

impl RetrySchedule {
    /// A schedule of these waits, in order.
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> Self {
        RetrySchedule(delays.into_iter().collect())
    }

    /// Every distinct delay, each of which needs a wait queue.
    pub fn delays(&self) -> Vec<Duration> {
        let mut delays = self.0.clone();
        delays.sort();
        delays.dedup();
        delays
    }

    /// The delay before the next retry, after a failed attempt that followed `retries_so_far`
    /// retries; `None` when retries are exhausted. A `Retry-After` from the endpoint is a lower
    /// bound, never a shortcut: the wait is the scheduled one or, when the endpoint asked for
    /// longer, the first delay at least that long (the longest, if none is).
    pub fn next_delay(
        &self,
        retries_so_far: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let scheduled = *self.0.get(retries_so_far as usize)?;
        let asked = retry_after.and_then(|wanted| {
            self.delays()
                .into_iter()
                .find(|delay| *delay >= wanted)
                .or_else(|| self.0.iter().max().copied())
        });
        Some(asked.map_or(scheduled, |asked| asked.max(scheduled)))
    }
}

/// A delay written as briefly as it can be, for queue names: 30s, 5m, 2h, 1500ms.
pub fn compact(delay: Duration) -> String {
    let ms = delay.as_millis();
    match ms {
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(s: &str) -> RetrySchedule {
        s.parse().unwrap()
    }

    #[test]
    fn the_default_schedule_parses_and_prints_back() {
        let parsed = schedule("30s,5m,30m,2h,8h");
        assert_eq!(parsed.to_string(), "30s,5m,30m,2h,8h");
        assert_eq!(parsed.delays().len(), 5);
    }

    #[test]
    fn each_retry_takes_its_own_delay_until_exhausted() {
        let parsed = schedule("1s,2s");
        assert_eq!(parsed.next_delay(0, None), Some(Duration::from_secs(1)));
        assert_eq!(parsed.next_delay(1, None), Some(Duration::from_secs(2)));
        assert_eq!(parsed.next_delay(2, None), None);
    }

    #[test]
    fn retry_after_lengthens_a_wait_to_a_level_at_least_that_long_and_never_shortens_one() {
        let parsed = schedule("30s,5m,30m");
        assert_eq!(
            parsed.next_delay(0, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parsed.next_delay(2, Some(Duration::from_secs(3))),
            Some(Duration::from_secs(1800)),
            "the third wait stays 30 minutes"
        );
        assert_eq!(
            parsed.next_delay(1, Some(Duration::from_secs(1))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            parsed.next_delay(0, Some(Duration::from_secs(7200))),
            Some(Duration::from_secs(1800))
        );
    }

    #[test]
    fn an_empty_schedule_means_no_retries_and_junk_is_refused() {
        assert_eq!(schedule("").next_delay(0, None), None);
        assert!("30s,soon".parse::<RetrySchedule>().is_err());
        assert!("0s".parse::<RetrySchedule>().is_err());
        assert!("30d".parse::<RetrySchedule>().is_err());
    }

    #[test]
    fn queue_names_use_compact_delays() {
        assert_eq!(compact(Duration::from_secs(30)), "30s");
        assert_eq!(compact(Duration::from_secs(300)), "5m");
        assert_eq!(compact(Duration::from_secs(7200)), "2h");
        assert_eq!(compact(Duration::from_millis(1500)), "1500ms");
    }
}
