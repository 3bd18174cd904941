//! `GET /api/v1/events`: server-sent events. Event `change`, data `{"generation": N}`, sent at
//! connect and whenever the host or the ledger changed (in this process or another one, as
//! [`crate::watch`] sees it); clients re-fetch what they show. Keep-alive comments every 15 s.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use futures_util::{Stream, StreamExt};
use tokio::sync::watch;

use crate::state::AppState;

/// How often an idle stream gets a comment, so proxies and clients see it alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/events", get(events))
}

async fn events(State(s): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = changes(s.subscribe()).take_until(async move { s.stopped().await });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// The generation now, then each new one (generations that come faster than the client reads
/// are folded into the last one: a client re-fetches anyway).
fn changes(rx: watch::Receiver<u64>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let generation = *rx.borrow_and_update();
        let ev = Event::default()
            .event("change")
            .data(format!("{{\"generation\":{generation}}}"));
        Some((Ok(ev), (rx, false)))
    })
}
