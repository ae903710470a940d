//! Dynamic credentials' lease: logged, held to `--min-ttl`, and told to the app with
//! `--export-lease`. The launcher cannot renew it after the exec (it no longer exists).

use launcher_core::Lease;

use crate::error::{Error, Exit};
use crate::plan::Plan;
use crate::{log, report};

/// A lease as the app may be told of it.
#[derive(Debug, Clone)]
pub struct LeaseInfo {
    /// The store's lease id.
    pub id: String,
    /// When the credentials stop working (the earlier of lease and token expiry), RFC 3339 UTC.
    pub expires_at: String,
}

/// Logs the lease, refuses it when it ends sooner than `--min-ttl`, and says when it ends.
pub fn check(plan: &Plan, lease: Lease) -> Result<LeaseInfo, Error> {
    let effective = lease.effective_ttl();
    let token_note = match lease.token_ttl {
        Some(t) if t < lease.ttl => format!("; the token it hangs on expires sooner, in {}s", t.as_secs()),
        _ => String::new(),
    };
    log::info(format!(
        "lease {}: {}s, {}{token_note}",
        lease.id,
        lease.ttl.as_secs(),
        match (lease.renewable, plan.supervise.is_some()) {
            (true, true) => "renewable (renewed while supervising)",
            (true, false) => "renewable (the launcher does not renew after exec)",
            (false, _) => "not renewable",
        }
    ));
    if let Some(min) = plan.min_ttl.filter(|min| effective < *min) {
        return Err(Error::msg(
            Exit::Config,
            format!("the credentials expire in {}s, sooner than --min-ttl {}s", effective.as_secs(), min.as_secs()),
        ));
    }
    let expires = std::time::SystemTime::now() + effective;
    Ok(LeaseInfo { id: lease.id, expires_at: report::rfc3339(expires) })
}
