//! Listening, background work and shutting down.
//!
//! On start, unfinished runs resume and approval decisions and deadlines are picked up every
//! second. On shutdown the listener stops accepting, requests in flight are answered, and runs
//! in flight get until the grace period ends to finish; a run still going then is parked
//! durably (its records are committed as it goes) and resumes at the next start. The
//! configured sources and feeds start with the server and stop taking in with the listener.
//! With certificate files the listener speaks TLS.

use crate::routes::router;
use crate::state::AppState;
use axum::serve::ListenerExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves `state` on `listener` until `shutdown` completes, then drains within `grace`.
/// Returns how many runs were still in flight (parked) when the grace period ended.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<usize> {
    // Runs left unfinished by an earlier process resume alongside new work.
    {
        let engine = state.engine().clone();
        state.runs.spawn(async move {
            let r = engine
                .resume(&mut |n| tracing::info!("resuming {n} unfinished run(s)"))
                .await;
            if let Err(e) = r {
                tracing::error!("resuming unfinished runs failed: {e}");
            }
        });
    }
    let ticker = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = state.engine().pick_up_decisions().await {
                    tracing::error!("picking up approval decisions failed: {e}");
                }
            }
        })
    };
    let sources = crate::sources::start(&state)
        .await
        .map_err(std::io::Error::other)?;
    if let Ok(addr) = listener.local_addr() {
        state
            .config
            .channels
            .set_served_at(format!("http://{addr}"));
    }
    let deliverer = crate::channels::spawn(state.clone());
    let (app, _) = router(state.clone());
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = stopped_tx.send(());
    };
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = match &state.config.ops.tls {
        Some(files) => {
            let config = crate::tls::server_config(files).map_err(std::io::Error::other)?;
            let tls = crate::tls::TlsListener::new(listener, config)?.tap_io(|_| {});
            let server = axum::serve(tls, app).with_graceful_shutdown(signal);
            tokio::spawn(async move { server.await })
        }
        None => {
            let server = axum::serve(listener, app).with_graceful_shutdown(signal);
            tokio::spawn(async move { server.await })
        }
    };
    // Wait for the shutdown signal, then give requests, sources and runs the grace period
    // together.
    let _ = stopped_rx.await;
    let deadline = tokio::time::Instant::now() + grace;
    ticker.abort();
    if let Some(d) = deliverer {
        d.abort();
    }
    let drained = tokio::time::timeout_at(deadline, async {
        let _ = server.await;
        sources.stop().await;
        state.runs.close();
        state.runs.wait().await;
    })
    .await;
    let parked = if drained.is_ok() { 0 } else { state.runs.len() };
    Ok(parked)
}
