//! The HTTP client's DNS resolver: the system resolver, with every address
//! checked against the [`OutboundPolicy`] before the client may connect to
//! it. Because the client connects to exactly the addresses returned here,
//! a name that resolves to a public address when checked and to a private
//! one when used (DNS rebinding) cannot get through.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::{OutboundError, OutboundPolicy};

/// Why the guarded resolver gave no address (carried through reqwest's
/// error chain and turned back into an [`OutboundError`]).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("{host} is not allowed: {reason}")]
    Refused { host: String, reason: &'static str },
    #[error("{host} could not be resolved")]
    NotFound { host: String },
}

impl ResolveError {
    pub(crate) fn to_outbound(&self) -> OutboundError {
        match self {
            ResolveError::Refused { host, reason } => OutboundError::AddressNotAllowed {
                host: host.clone(),
                reason,
            },
            ResolveError::NotFound { host } => OutboundError::Dns { host: host.clone() },
        }
    }
}

/// A [`Resolve`] that drops the addresses the policy refuses, and fails
/// when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl GuardedResolver {
    pub fn new(policy: Arc<OutboundPolicy>) -> Self {
        Self { policy }
    }

    /// Resolves `host` and keeps the allowed addresses (port 0).
    pub async fn lookup(&self, host: &str) -> Result<Vec<SocketAddr>, OutboundError> {
        lookup(&self.policy, host)
            .await
            .map_err(|e| e.to_outbound())
    }
}

async fn lookup(policy: &OutboundPolicy, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
    if let Err(reason) = policy.check_name(host) {
        return Err(ResolveError::Refused {
            host: host.to_owned(),
            reason,
        });
    }
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|_| ResolveError::NotFound {
            host: host.to_owned(),
        })?
        .collect();
    let mut first_refusal = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match policy.check_ip(a.ip()) {
            Ok(()) => true,
            Err(reason) => {
                first_refusal.get_or_insert(reason);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(match first_refusal {
            Some(reason) => ResolveError::Refused {
                host: host.to_owned(),
                reason,
            },
            None => ResolveError::NotFound {
                host: host.to_owned(),
            },
        });
    }
    Ok(allowed)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        Box::pin(async move {
            let addrs = lookup(&policy, name.as_str()).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
