//! `--wait`: retrying what is unreachable (a store or a database starting up, a failover) with
//! jittered exponential back-off until the deadline; nothing else is retried.

use std::time::Duration;

use crate::error::{Error, Exit};
use crate::log;
use crate::plan::Plan;
use crate::signals::Signals;

/// Retries `attempt` while it fails with "unreachable" and `--wait` has time left, sleeping
/// with jittered exponential back-off (200 ms doubling to 5 s). Other failures return at once;
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
                let full = Duration::from_millis(200u64.saturating_mul(1 << n.min(5))).min(Duration::from_secs(5));
                let random = std::hash::BuildHasher::hash_one(&jitter, n);
                let delay = (full / 2 + full / 2000 * u32::try_from(random % 1000).unwrap_or(0)).min(left);
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
