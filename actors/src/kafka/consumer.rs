//! `KafkaConsumerActor`: the receiving side of a Kafka hop. It reads a batch, decodes it
//! (what cannot be decoded or validated goes to `tt_dead_letter` with the reason in a header)
//! and hands it to the next actor; once that actor has stored its effects, it commits the
//! offsets: at-least-once delivery, made effectively exactly-once by idempotent writes
//! downstream. A batch the next actor refuses is offered again, never skipped.
//!
//! Pipelined (`pipeline_depth` batches): the processor answers when a batch is calculated and
//! its effects (hop 2 and the database) are stored later, and the Redis cache when it has sent
//! a batch's write, which Redis applies later; so the next batch is read and handed on
//! meanwhile. Offsets are still committed in batch order, each only when that batch and every
//! batch before it are stored ([`CommitWindow`]); a batch that is not stored is offered again
//! with every batch after it, under a new *run*, and no offset is committed past it. (The cache
//! numbers its writes per run so that Redis refuses any write that overtook a failed one.)
//!
//! On a partition assignment the processor is told to reload its state from the database
//! (another processor may have moved those instruments on), before any new batch reaches it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{DEAD_LETTER_TOPIC, KafkaSettings, REASON_HEADER};
use crate::backoff::Backoff;
use crate::domain::trace_context::{TRACEPARENT, TraceContext, from_traceparent};
use crate::domain::{EventId, InstrumentCatalog, Published, RawEvent};
use crate::health::{ActorHealth, now_micros};
use crate::messages::{Durable, HopError, RawBatch, Restart, StoreUpdates};
use crate::metrics::Metrics;
use crate::pipeline::{CommitWindow, Settled, Ticket};

/// Most messages handed on in one batch.
const MAX_BATCH: usize = 2_000;
/// How long to keep filling a batch once its first message is there.
const LINGER: Duration = Duration::from_millis(2);

/// What a consumer reads and where it hands it.
#[derive(Clone)]
pub enum Feed {
    /// `tt_raw_data` into the processor; `reload` is told on every partition assignment.
    Raw { target: Recipient<RawBatch>, reload: Recipient<Restart>, catalog: Arc<InstrumentCatalog> },
    /// `tt_processed_data` into the Redis cache.
    Processed { target: Recipient<StoreUpdates> },
}

impl Feed {
    /// Who stores the batches, as the log and the health detail name it.
    fn next_actor(&self) -> &'static str {
        match self {
            Feed::Raw { .. } => "the processor",
            Feed::Processed { .. } => "the cache",
        }
    }
}

struct RebalanceContext {
    reload: Option<Recipient<Restart>>,
    /// Revocations so far: a message read before the latest one is never committed by this
    /// member (see [`next_offsets`]).
    revocations: Arc<AtomicU64>,
    health: Arc<ActorHealth>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            self.revocations.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned: Vec<String> = partitions.elements().iter().map(|e| e.partition().to_string()).collect();
                tracing::info!(partitions = ?assigned, "Kafka partitions assigned");
                self.health.set_detail(Some(format!("assigned partitions {}", assigned.join(","))));
                if let Some(reload) = &self.reload {
                    reload.do_send(Restart);
                }
            }
            Rebalance::Revoke(_) => tracing::info!("Kafka partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance error"),
        }
    }
}

type TtConsumer = StreamConsumer<RebalanceContext>;

/// A message taken out of the consumer: what is needed after the borrow ends.
struct Received {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    /// The `traceparent` header of a sampled event or update.
    trace: Option<TraceContext>,
    /// Partition revocations this member had seen when it read the message.
    revocations: u64,
    /// Sent to the dead-letter topic already: when its batch is offered again (a later store
    /// failed), it is neither handed on nor dead-lettered a second time.
    dead_lettered: bool,
}

/// Built field by field: every field is an input the supervisor hands over as it is.
pub struct KafkaConsumerActor {
    pub settings: KafkaSettings,
    pub topic: &'static str,
    /// Joins the consumer group `<group>-<group_suffix>`.
    pub group_suffix: &'static str,
    pub feed: Feed,
    /// Batches handed on whose effects may be being stored at once (at least 1): the next
    /// batch is read, decoded and calculated meanwhile; offsets are committed in order.
    pub pipeline_depth: usize,
    pub metrics: Arc<Metrics>,
    pub health: Arc<ActorHealth>,
}

impl Actor for KafkaConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let reload = match &self.feed {
            Feed::Raw { reload, .. } => Some(reload.clone()),
            Feed::Processed { .. } => None,
        };
        let revocations = Arc::new(AtomicU64::new(0));
        let context = RebalanceContext { reload, revocations: revocations.clone(), health: self.health.clone() };
        let consumer: TtConsumer = match self.settings.consumer_config(self.group_suffix).create_with_context(context) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(topic = self.topic, error = %e, "cannot create the Kafka consumer; retrying in 1 s");
                self.health.set_detail(Some(e.to_string()));
                crate::supervision::restart_later::<Self>(ctx);
                return;
            }
        };
        if let Err(e) = consumer.subscribe(&[self.topic]) {
            tracing::error!(topic = self.topic, error = %e, "cannot subscribe; retrying in 1 s");
            crate::supervision::restart_later::<Self>(ctx);
            return;
        }
        // Without a dead-letter producer a poison message could only be dropped: do not start.
        let dead_letters: FutureProducer = match self.settings.producer_config().create() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create the dead-letter producer; retrying in 1 s");
                self.health.set_detail(Some(e.to_string()));
                crate::supervision::restart_later::<Self>(ctx);
                return;
            }
        };
        let consumer = Arc::new(consumer);
        self.health.set_running();
        let pump = Pump {
            consumer: consumer.clone(),
            last_warning: std::sync::Mutex::new(None),
            dead_letters,
            topic: self.topic,
            feed: self.feed.clone(),
            pipeline_depth: self.pipeline_depth,
            revocations,
            metrics: self.metrics.clone(),
            health: self.health.clone(),
        };
        ctx.spawn(pump.run().into_actor(self));
        // Consumer lag per partition, read off the broker's high watermarks.
        let (topic, metrics) = (self.topic, self.metrics.clone());
        ctx.run_interval(Duration::from_secs(5), move |_, _| {
            let (consumer, metrics) = (consumer.clone(), metrics.clone());
            actix_rt::task::spawn_blocking(move || record_lag(&consumer, topic, &metrics));
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(KafkaConsumerActor);

fn record_lag(consumer: &TtConsumer, topic: &str, metrics: &Metrics) {
    let Ok(assignment) = consumer.assignment() else { return };
    let Ok(positions) = consumer.position() else { return };
    for element in assignment.elements() {
        let partition = element.partition();
        let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(1)) else { continue };
        let position = positions
            .find_partition(topic, partition)
            .and_then(|p| match p.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            })
            .unwrap_or(0);
        let lag = (high - position).max(0);
        metrics.kafka_consumer_lag.with_label_values(&[topic, &partition.to_string()]).set(lag);
    }
}

struct Pump {
    consumer: Arc<TtConsumer>,
    last_warning: std::sync::Mutex<Option<std::time::Instant>>,
    dead_letters: FutureProducer,
    topic: &'static str,
    feed: Feed,
    pipeline_depth: usize,
    /// Shared with the rebalance callback, which runs inside `recv` on this task.
    revocations: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

/// A batch handed on whose effects are not known to be stored yet: kept until its offsets are
/// committed, and offered again if it fails.
struct InFlight {
    batch: Vec<Received>,
}

impl Pump {
    /// Reads batches ahead (one at most waits to be handed on) while earlier ones are stored.
    async fn run(self) {
        let (batches, received) = tokio::sync::mpsc::channel(1);
        let read = async {
            loop {
                let batch = self.next_batch().await;
                if !batch.is_empty() && batches.send(batch).await.is_err() {
                    return;
                }
            }
        };
        futures_util::future::join(read, self.deliver_in_order(received)).await;
    }

    /// Hands batches on while up to `pipeline_depth` earlier ones are still being stored, and
    /// commits offsets in batch order, only past batches whose effects are all stored. A batch
    /// that fails to be stored is offered again with every batch after it (those are
    /// duplicates to the processor where they were stored already); no offset passes it.
    async fn deliver_in_order(&self, mut received: tokio::sync::mpsc::Receiver<Vec<Received>>) {
        let mut window: CommitWindow<InFlight> = CommitWindow::new(self.pipeline_depth);
        let mut durables = FuturesUnordered::new();
        let mut again: VecDeque<Vec<Received>> = VecDeque::new();
        // Counts the restarts below; the cache orders its writes within one run.
        let mut run = 0;
        let mut redo_backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let Settled { commit, redo } = window.settle();
            if !commit.is_empty() {
                self.commit(commit);
                redo_backoff.reset();
            }
            if !redo.is_empty() {
                let delay = redo_backoff.next_delay();
                tracing::warn!(
                    topic = self.topic,
                    batches = redo.len(),
                    retry_in_ms = delay.as_millis() as u64,
                    "a batch was not stored; it and the batches after it are offered again, and no offset is committed past it"
                );
                // Their answers no longer count: they are handed on again under new tickets.
                durables = FuturesUnordered::new();
                again = redo.into_iter().map(|f| f.batch).chain(again).collect();
                run += 1;
                // After a pause, as for a batch refused outright: a store that fails at once
                // (Redis loading its data or out of memory, say) is not hammered. The window is
                // empty meanwhile: the redo took every batch in it.
                actix_rt::time::sleep(delay).await;
            }
            let next = if window.is_full() { None } else { again.pop_front() };
            let batch = match next {
                Some(batch) => batch,
                None => tokio::select! {
                    biased;
                    Some((ticket, outcome)) = durables.next(), if !durables.is_empty() => {
                        if let Err(e) = &outcome {
                            tracing::warn!(topic = self.topic, error = %e, "{} did not store a batch", self.feed.next_actor());
                            self.health.set_detail(Some(format!("waiting for {}: {e}", self.feed.next_actor())));
                        }
                        window.finish(ticket, outcome.is_ok());
                        continue;
                    }
                    batch = received.recv(), if !window.is_full() => match batch {
                        Some(batch) => batch,
                        None => return,
                    },
                    // Cannot happen: a full window has an unfinished batch, whose answer is awaited.
                    else => {
                        actix_rt::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let (in_flight, durable) = self.hand_on(batch, run).await;
            match window.push(in_flight) {
                Ok(ticket) => durables.push(stored(ticket, durable)),
                // Cannot happen (room is made before a batch is handed on): offered again, not lost.
                Err(full) => again.push_front(full.item.batch),
            }
        }
    }

    async fn next_batch(&self) -> Vec<Received> {
        let mut batch = Vec::new();
        let first = match self.consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                // librdkafka reconnects by itself; these errors report what it saw (and queue
                // up while the broker is away), so they are counted and logged, not waited on.
                self.metrics.kafka_errors.with_label_values(&[self.topic]).inc();
                self.health.set_detail(Some(format!("receive failed: {e}")));
                let now = std::time::Instant::now();
                let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
                if last.is_none_or(|at| now.duration_since(at) > Duration::from_secs(5)) {
                    tracing::warn!(topic = self.topic, error = %e, "Kafka receive failed; librdkafka keeps retrying");
                    *last = Some(now);
                }
                return batch;
            }
        };
        batch.push(take(&first, self.revocations.load(Ordering::SeqCst)));
        drop(first);
        while batch.len() < MAX_BATCH {
            match actix_rt::time::timeout(LINGER, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(take(&m, self.revocations.load(Ordering::SeqCst))),
                _ => break,
            }
        }
        self.metrics.kafka_consumed.with_label_values(&[self.topic]).inc_by(batch.len() as u64);
        batch
    }

    /// Hands the batch on until the next actor took it; answers what is kept of it until its
    /// offsets are committed, and what resolves once its effects are stored.
    async fn hand_on(&self, mut batch: Vec<Received>, run: u64) -> (InFlight, Durable) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let durable = match &self.feed {
            Feed::Raw { target, catalog, .. } => {
                let mut events = Vec::with_capacity(batch.len());
                // The message each event came from, to dead-letter what the processor refuses.
                let mut origins = Vec::with_capacity(batch.len());
                let now = now_micros();
                for (position, message) in batch.iter_mut().enumerate() {
                    if message.dead_lettered {
                        continue;
                    }
                    let decoded = RawEvent::decode(&message.payload).and_then(|raw| {
                        // Events on the topic were stamped by an ingester (id and ingest time are
                        // kept); one without an id is given one from its topic position, which is
                        // stable on replay.
                        let fallback =
                            EventId { source: format!("kafka-p{}", message.partition), seq: message.offset as u64 };
                        raw.validate(catalog, now, &mut || fallback.clone())
                    });
                    match decoded {
                        Ok(mut event) => {
                            event.trace = message.trace.clone();
                            events.push(event);
                            origins.push(position);
                        }
                        Err(e) => self.dead_letter(message, &e.to_string()).await,
                    }
                }
                if events.is_empty() {
                    return (InFlight { batch }, Durable::already());
                }
                loop {
                    // Answered once the batch is calculated; stored later (`durable`).
                    let answer = match target.send(RawBatch { events: events.clone() }).await {
                        Ok(Ok(ack)) => Ok(ack),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match answer {
                        Ok(ack) => {
                            // Refused events were not applied: they go to the dead-letter topic
                            // with the reason now, before the batch's offsets can be committed,
                            // whatever becomes of the batch (read again after a revocation, a
                            // refused event may count as a duplicate of later ones).
                            for refusal in &ack.refused {
                                if let Some(message) = origins.get(refusal.index).and_then(|&i| batch.get_mut(i)) {
                                    let reason = format!("refused by the processor: {}", refusal.error);
                                    self.dead_letter(message, &reason).await;
                                }
                            }
                            self.health.handled_n(batch.len() as u64);
                            return (InFlight { batch }, ack.durable);
                        }
                        Err(e) => {
                            tracing::warn!(topic = self.topic, error = %e, "the processor did not take the batch; offering it again");
                            self.health.set_detail(Some(format!("waiting for the processor: {e}")));
                            actix_rt::time::sleep(backoff.next_delay()).await;
                        }
                    }
                }
            }
            Feed::Processed { target } => {
                let mut updates = Vec::with_capacity(batch.len());
                for message in batch.iter_mut().filter(|message| !message.dead_lettered) {
                    match Published::from_json(&message.payload) {
                        Ok(mut update) => {
                            if message.trace.is_some() {
                                update.trace = message.trace.clone();
                            }
                            updates.push(update);
                        }
                        Err(e) => self.dead_letter(message, &format!("not a processed update: {e}")).await,
                    }
                }
                if updates.is_empty() {
                    Durable::already()
                } else {
                    let updates: Arc<[Published]> = updates.into();
                    // The cache answers once it has sent the write; `durable` once Redis applied it.
                    loop {
                        match target.send(StoreUpdates { updates: updates.clone(), run }).await {
                            Ok(Ok(durable)) => break durable,
                            Ok(Err(e)) => {
                                tracing::warn!(topic = self.topic, error = %e, "the cache did not take the batch; offering it again")
                            }
                            Err(e) => {
                                tracing::warn!(topic = self.topic, error = %e, "the cache is unavailable; offering the batch again")
                            }
                        }
                        actix_rt::time::sleep(backoff.next_delay()).await;
                    }
                }
            }
        };
        self.health.handled_n(batch.len() as u64);
        (InFlight { batch }, durable)
    }

    /// Sends a message that cannot be used to the dead-letter topic, with the reason and where
    /// it came from in headers. Keeps trying: a poison message must not be lost either.
    async fn dead_letter(&self, message: &mut Received, reason: &str) {
        tracing::warn!(
            topic = self.topic,
            partition = message.partition,
            offset = message.offset,
            reason,
            "dead letter"
        );
        self.metrics.dead_letters.inc();
        let producer = &self.dead_letters;
        let origin = format!("{}/{}/{}", self.topic, message.partition, message.offset);
        loop {
            let headers = OwnedHeaders::new()
                .insert(Header { key: REASON_HEADER, value: Some(reason) })
                .insert(Header { key: "ttpulse-origin", value: Some(origin.as_str()) });
            let mut record = FutureRecord::to(DEAD_LETTER_TOPIC).payload(&message.payload).headers(headers);
            if let Some(key) = &message.key {
                record = record.key(key);
            }
            match producer.send(record, Duration::from_secs(10)).await {
                Ok(_) => {
                    message.dead_lettered = true;
                    return;
                }
                Err((e, _)) => {
                    tracing::warn!(error = %e, "dead-letter produce failed; retrying");
                    actix_rt::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Commits the next offset of every partition in the batches (stored, in order, each after
    /// every batch before it), of the messages read since the latest revocation.
    fn commit(&self, batches: Vec<InFlight>) {
        // Read here, with no await before the commit below: the rebalance callbacks run inside
        // `recv` on this task, so none can run in between.
        let revocations = self.revocations.load(Ordering::SeqCst);
        let (next, skipped) = next_offsets(batches.iter().flat_map(|b| &b.batch), revocations);
        if skipped > 0 {
            tracing::info!(
                topic = self.topic,
                messages = skipped,
                "not committing messages read before a partition revocation; their partitions' owners read them again"
            );
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in next {
            if list.add_partition_offset(self.topic, partition, Offset::Offset(offset)).is_err() {
                continue;
            }
        }
        if list.count() == 0 {
            return;
        }
        // A failed commit (e.g. during a rebalance) means the batch is read again: harmless.
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(topic = self.topic, error = %e, "offset commit failed; the batch may be read again");
        }
    }
}

/// The next offset to commit per partition, of the messages read since the latest partition
/// revocation (`revocations`), and how many messages were left out.
///
/// Why: with batches in flight a member can be told to give up partitions while their batches
/// are still being stored. Committing them afterwards could move the group's offset past what
/// the new owner loaded from the database when it was assigned the partition (it reloads then),
/// so it would skip events its state never saw. Left uncommitted, they are read again by the new
/// owner from the offset committed before the revocation, which its reload does include: effects
/// are stored before their offsets are committed, and commits stop at the revocation. Events it
/// finds stored already are duplicates to it; the others it computes again, to the same values.
/// Apache Kafka accepts a commit from a member for partitions it no longer owns (the broker
/// checks the member and generation, not the assignment), so this cannot be left to the broker.
fn next_offsets<'a>(messages: impl Iterator<Item = &'a Received>, revocations: u64) -> (BTreeMap<i32, i64>, usize) {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut skipped = 0;
    for message in messages {
        if message.revocations != revocations {
            skipped += 1;
            continue;
        }
        let entry = next.entry(message.partition).or_insert(0);
        *entry = (*entry).max(message.offset + 1);
    }
    (next, skipped)
}

/// How a batch in the window finished: when its effects are stored, or why they are not.
async fn stored(ticket: Ticket, durable: Durable) -> (Ticket, Result<(), HopError>) {
    (ticket, durable.wait().await)
}

fn take(message: &rdkafka::message::BorrowedMessage<'_>, revocations: u64) -> Received {
    Received {
        revocations,
        dead_lettered: false,
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        trace: message.headers().and_then(|headers| {
            // The first valid one, should a producer have added several.
            headers
                .iter()
                .filter(|header| header.key == TRACEPARENT)
                .find_map(|header| std::str::from_utf8(header.value?).ok().and_then(from_traceparent))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(partition: i32, offset: i64, revocations: u64) -> Received {
        Received { partition, offset, key: None, payload: Vec::new(), trace: None, revocations, dead_lettered: false }
    }

    #[test]
    fn offsets_are_committed_past_every_message_read_since_the_last_revocation() {
        let messages = [read(0, 7, 2), read(1, 3, 2), read(0, 9, 2), read(1, 2, 2)];
        let (next, skipped) = next_offsets(messages.iter(), 2);
        assert_eq!(next, BTreeMap::from([(0, 10), (1, 4)]));
        assert_eq!(skipped, 0);
    }

    #[test]
    fn messages_read_before_a_revocation_are_never_committed() {
        // Partition 0 was read before the revocation (and may now belong to another member);
        // partition 1 was read after it, from this member's new assignment.
        let messages = [read(0, 100, 4), read(0, 101, 4), read(1, 50, 5)];
        let (next, skipped) = next_offsets(messages.iter(), 5);
        assert_eq!(next, BTreeMap::from([(1, 51)]));
        assert_eq!(skipped, 2);
        // Nothing read since the latest revocation: nothing to commit.
        let (next, skipped) = next_offsets(messages.iter(), 6);
        assert!(next.is_empty());
        assert_eq!(skipped, 3);
    }
}
