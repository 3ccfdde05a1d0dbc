//! What the server's routes share, and the part of it each API takes.

use std::sync::Arc;

use axum::extract::FromRef;

use crate::running::supervisor::Supervisor;
use crate::server::query_api::{QueryService, QueryState};

/// What the admin routes share.
#[derive(Clone)]
pub(crate) struct AdminState {
    pub supervisor: Arc<Supervisor>,
    pub metrics: Arc<prometheus_client::registry::Registry>,
    /// Set once shutdown has begun: `/readyz` answers 503 from then on.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The address the server listens on (for streams' endpoint URLs).
    pub addr: std::net::SocketAddr,
    /// What `POST /v1/query` requests share ([`crate::server::query_api`]).
    pub query: Arc<QueryService>,
}

impl FromRef<AdminState> for QueryState {
    fn from_ref(state: &AdminState) -> QueryState {
        QueryState {
            service: state.query.clone(),
            supervisor: state.supervisor.clone(),
        }
    }
}
