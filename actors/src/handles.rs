//! Handles through which the HTTP layer asks the actors, so that it never touches actix types:
//! each hides an address and maps a lost mailbox to the handle's own error.

use std::collections::BTreeMap;

use actix::prelude::*;

use crate::domain::{RawEvent, TraceContext};
use crate::ingest::IngesterActor;
use crate::messages::{Durable, IngestError, IngestEvents, IngestReceipt, Restart, StopIntake};
use crate::store::{DbActor, StoreError};

/// The database reader (DbActors on their `SyncArbiter`).
#[derive(Clone)]
pub struct DbReader(Addr<DbActor>);

impl DbReader {
    pub fn new(actor: Addr<DbActor>) -> Self {
        Self(actor)
    }

    /// Runs `query`; a reader that is gone is [`StoreError::Unavailable`].
    pub async fn read<Q: DbQuery>(&self, query: Q) -> Result<Q::Answer, StoreError> {
        query.ask(&self.0).await
    }
}

/// A read the database reader answers: every query message of the store (written beside its
/// handler by `query_handlers!`).
pub trait DbQuery: Sized {
    type Answer;

    fn ask(self, reader: &Addr<DbActor>) -> impl Future<Output = Result<Self::Answer, StoreError>>;
}

/// The ingester: where pushed events enter the pipeline.
#[derive(Clone)]
pub struct Intake(Addr<IngesterActor>);

impl Intake {
    pub fn new(actor: Addr<IngesterActor>) -> Self {
        Self(actor)
    }

    /// Hands `events` on (continuing the client's `trace`); the receipt comes once they were
    /// handed to the next hop, [`Durable`] resolves once they are stored.
    pub async fn ingest(
        &self,
        events: Vec<RawEvent>,
        trace: Option<TraceContext>,
    ) -> Result<(IngestReceipt, Durable), IngestError> {
        self.0.send(IngestEvents { events, trace }).await.map_err(IngestError::Unavailable)?
    }

    /// Graceful shutdown, step 1: no more events are taken in.
    pub async fn stop(&self) {
        let _ = self.0.send(StopIntake).await;
    }
}

/// The actors an operator may restart (`POST /admin/actors/{name}/restart`), by name.
#[derive(Clone, Default)]
pub struct Restarts(BTreeMap<&'static str, Recipient<Restart>>);

impl Restarts {
    pub fn insert(&mut self, name: &'static str, actor: Recipient<Restart>) {
        self.0.insert(name, actor);
    }

    /// Stops the actor `name` (its supervisor starts it again); `false` if there is none.
    pub fn restart(&self, name: &str) -> bool {
        self.0.get(name).map(|actor| actor.do_send(Restart)).is_some()
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.keys().copied()
    }
}

impl<const N: usize> From<[(&'static str, Recipient<Restart>); N]> for Restarts {
    fn from(actors: [(&'static str, Recipient<Restart>); N]) -> Self {
        Self(BTreeMap::from(actors))
    }
}
