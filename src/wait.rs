//! `--wait`: retrying what is unreachable (a store or a database starting up, a failover) with
//! jittered exponential back-off until the deadline; nothing else is retried.

use std::time::Duration;

use crate::error::{Error, Exit};
use crate::log;
use crate::plan::Plan;
use crate::signals::Signals;

/// Retries `attempt` while it fails with "unreachable" and `--wait` has time left, sleeping
/// with jittered exponential back-off (200 ms doubling to 5 s), or, for a store that throttled
/// the request, between the time it asked for and twice that. Other failures return at once;
/// a signal ends the wait (nothing is held between attempts).
pub async fn with_wait<T, F, Fut>(plan: &Plan, signals: &Signals, mut attempt: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let Some(wait) = plan.wait else { return attempt().await };
    let deadline = std::time::Instant::now() + wait;
    let jitter = std::collections::hash_map::RandomState::new();
    for n in 0u32.. {
        match attempt().await {
            Err(e) if e.exit() == Exit::Unavailable => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(e
                        .context(format!("still unavailable after waiting {}s", wait.as_secs()))
                        .with_exit(Exit::TempFail));
                }
                let random = u32::try_from(std::hash::BuildHasher::hash_one(&jitter, n) % 1000).unwrap_or(0);
                let delay = match e.retry_after() {
                    // A throttling store said when to come back: not before, and spread over as
                    // long again, so that a fleet started at once does not come back at once.
                    Some(asked) if asked >= left => {
                        return Err(e
                            .context(format!(
                                "the store asked to wait {}s, more than the {}s --wait has left",
                                asked.as_secs(),
                                left.as_secs()
                            ))
                            .with_exit(Exit::TempFail));
                    }
                    Some(asked) => (asked + asked / 1000 * random).min(left),
                    None => {
                        let full =
                            Duration::from_millis(200u64.saturating_mul(1 << n.min(5))).min(Duration::from_secs(5));
                        (full / 2 + full / 2000 * random).min(left)
                    }
                };
                log::info(format!("attempt {} failed, retrying in {}ms: {e}", n + 1, delay.as_millis()));
                signals
                    .abort_on(async {
                        tokio::time::sleep(delay).await;
                        Ok(())
                    })
                    .await?;
            }
            other => return other,
        }
    }
    unreachable!("the loop returns")
}
