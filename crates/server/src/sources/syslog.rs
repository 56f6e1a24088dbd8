//! A syslog/CEF listener (`belay_logs`): each TCP connection's batch is acknowledged to it
//! only after its commit; UDP has no acknowledgement.

use super::status::SourcesStatus;
use crate::state::AppState;
use belay_logs::{Batch, Listener, ListenerConfig, Normalizer};
use belay_store::Accepted;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub(super) async fn start(
    state: Arc<AppState>,
    name: String,
    config: ListenerConfig,
    stop: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, String> {
    let listener = Listener::bind(config, Normalizer::builtin())
        .await
        .map_err(|e| format!("[[sources]] `{name}`: {e}"))?;
    let (udp, tcp) = listener.local_addrs();
    let address: Vec<String> = udp
        .map(|a| format!("udp {a}"))
        .into_iter()
        .chain(tcp.map(|a| format!("tcp {a}")))
        .collect();
    let address = address.join(", ");
    eprintln!("belay serve: source `{name}` (syslog) listening on {address}");
    let status: &SourcesStatus = &state.sources;
    status.register(&name, "syslog", &address, None);
    status.running(&name, true);
    Ok(tokio::spawn(async move {
        let (tx, mut rx) = mpsc::channel::<Batch>(64);
        let receiving = tokio::spawn(listener.run(tx, stop));
        while let Some(mut batch) = rx.recv().await {
            let n = batch.events.len();
            let ticket = state.queue.wait(n).await;
            let events = batch.events.drain(..).map(|e| (e, None)).collect();
            match state.ingest_from_source(&name, events, ticket).await {
                Ok(accepted) => {
                    if let Some(done) = batch.done {
                        let _ = done.send(());
                    }
                    let new = accepted
                        .iter()
                        .filter(|a| a.accepted == Accepted::New)
                        .count();
                    state.sources.success(&name, new as u64, None);
                }
                // Not durable: a TCP sender sees its connection closed, unacknowledged.
                Err(e) => state
                    .sources
                    .error(&name, &format!("cannot store {n} event(s): {e}")),
            }
        }
        let _ = receiving.await;
        state.sources.running(&name, false);
    }))
}
