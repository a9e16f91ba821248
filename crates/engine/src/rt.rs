//! Runs a hot writer loop on an OS thread of its own.
//!
//! Why: the SQLite writers are the ingest path's single point of
//! serialisation, and they run a whole batch synchronously on their own
//! rusqlite connection (`clicktrail_store::Db::dedicated_writer`), blocking
//! the thread they run on for the length of a commit. On the shared
//! multi-threaded runtime that would take a request worker away per batch,
//! and every `.await` between batches would wait behind hundreds of request
//! tasks (measured: that queueing was most of the writer's time under
//! load). A current-thread runtime on a dedicated thread avoids both; if no
//! thread can be started the writer runs on the shared runtime and blocks
//! one of its workers per batch.

use std::future::Future;

use tokio::task::JoinHandle;

/// Spawns `fut` on a new thread with its own current-thread runtime. The
/// returned handle completes when the future does. Falls back to the
/// ambient runtime if the thread or runtime cannot be created.
pub fn spawn_dedicated<F>(name: &str, fut: F) -> JoinHandle<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::warn!(error = %e, "no dedicated writer runtime; running on the shared one");
            return tokio::spawn(fut);
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    // The future goes through a channel so that it comes back to us if
    // the thread cannot be started.
    let (fut_tx, fut_rx) = std::sync::mpsc::sync_channel::<F>(1);
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            if let Ok(fut) = fut_rx.recv() {
                rt.block_on(fut);
                let _ = done_tx.send(());
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no dedicated writer thread; running on the shared runtime");
        return tokio::spawn(fut);
    }
    match fut_tx.send(fut) {
        Ok(()) => tokio::spawn(async move {
            if done_rx.await.is_err() {
                tracing::error!("a dedicated writer thread stopped before its work was done");
            }
        }),
        Err(std::sync::mpsc::SendError(fut)) => tokio::spawn(fut),
    }
}
