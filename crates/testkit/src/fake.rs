//! What every ad-platform fake shares: the fault script ([`Faults`]), the
//! server on an OS-chosen port, and the running fake's handle
//! ([`Running`]: address, state, stopped on drop, fault controls).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use tokio::task::JoinHandle;

/// Faults to inject ahead of normal answers: a queue consumed one per
/// request ("fail the next N"), then an optional outage until an instant,
/// plus a delay before every answer.
#[derive(Debug)]
pub struct Faults<F> {
    queue: VecDeque<F>,
    outage: Option<(F, Instant)>,
    delay: Duration,
}

impl<F> Default for Faults<F> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            outage: None,
            delay: Duration::ZERO,
        }
    }
}

impl<F: Clone> Faults<F> {
    /// The fault for the request arriving now, if any.
    pub fn take(&mut self) -> Option<F> {
        if let Some(f) = self.queue.pop_front() {
            return Some(f);
        }
        match &self.outage {
            Some((f, until)) if Instant::now() < *until => Some(f.clone()),
            Some(_) => {
                self.outage = None;
                None
            }
            None => None,
        }
    }

    pub fn fail_next(&mut self, n: usize, fault: F) {
        self.queue.extend(std::iter::repeat_n(fault, n));
    }

    pub fn outage_until(&mut self, until: Instant, fault: F) {
        self.outage = Some((fault, until));
    }

    pub fn set_delay(&mut self, delay: Duration) {
        self.delay = delay;
    }

    pub fn delay(&self) -> Duration {
        self.delay
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.outage = None;
        self.delay = Duration::ZERO;
    }
}

/// Serves `router` on 127.0.0.1 with an OS-chosen port.
pub(crate) async fn serve(router: Router) -> anyhow::Result<(String, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let task = tokio::spawn(async move {
        // The server only stops when the fake is dropped (task aborted).
        let _ = axum::serve(listener, router).await;
    });
    Ok((base, task))
}

/// Locks a fake's state; a panicking handler must not wedge the tests
/// that inspect it afterwards.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fake's state that holds a fault script.
pub trait HasFaults {
    type Fault: Clone;
    fn faults(&mut self) -> &mut Faults<Self::Fault>;
}

/// A running fake; each fake derefs to it for the controls they share.
/// Dropping it stops the server.
pub struct Running<S> {
    base_url: String,
    pub(crate) state: Arc<Mutex<S>>,
    task: JoinHandle<()>,
}

impl<S> Drop for Running<S> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<S> Running<S> {
    /// Serves `router` (built over `state`) on 127.0.0.1.
    pub(crate) async fn serve(state: Arc<Mutex<S>>, router: Router) -> anyhow::Result<Self> {
        let (base_url, task) = serve(router).await?;
        Ok(Self {
            base_url,
            state,
            task,
        })
    }

    /// For the destination's `settings.endpoint`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }
}

impl<S: HasFaults> Running<S> {
    /// The next `n` requests get `fault`.
    pub fn fail_next(&self, n: usize, fault: S::Fault) {
        lock(&self.state).faults().fail_next(n, fault);
    }

    /// Every request gets `fault` until `until`.
    pub fn outage_until(&self, until: Instant, fault: S::Fault) {
        lock(&self.state).faults().outage_until(until, fault);
    }

    /// Delay before every answer.
    pub fn set_delay(&self, delay: Duration) {
        lock(&self.state).faults().set_delay(delay);
    }

    /// Clears faults and delays (recordings stay).
    pub fn heal(&self) {
        lock(&self.state).faults().clear();
    }
}

/// `impl Deref<Target = Running<$state>>` and `HasFaults` for a fake.
macro_rules! fake_handle {
    ($fake:ident, $state:ident, $fault:ty) => {
        impl std::ops::Deref for $fake {
            type Target = $crate::fake::Running<$state>;
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
        impl $crate::fake::HasFaults for $state {
            type Fault = $fault;
            fn faults(&mut self) -> &mut $crate::fake::Faults<$fault> {
                &mut self.faults
            }
        }
    };
}
pub(crate) use fake_handle;
