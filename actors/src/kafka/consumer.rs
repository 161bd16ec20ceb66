//! `KafkaConsumerActor`: the receiving side of a Kafka hop. It reads a batch, decodes it
//! (what cannot be decoded or validated goes to `tt_dead_letter` with the reason in a header),
//! hands it to the next actor, waits until that actor has stored its effects, and only then
//! commits the offsets: at-least-once delivery, made effectively exactly-once by idempotent
//! writes downstream. A batch the next actor refuses is offered again, never skipped.
//!
//! On a partition assignment the processor is told to reload its state from the database
//! (another processor may have moved those instruments on), before any new batch reaches it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{DEAD_LETTER_TOPIC, KafkaSettings, REASON_HEADER};
use crate::backoff::Backoff;
use crate::domain::trace_context::{TRACEPARENT, TraceContext, from_traceparent};
use crate::domain::{EventId, InstrumentCatalog, Published, RawEvent};
use crate::health::{ActorHealth, now_micros};
use crate::messages::{RawBatch, Restart, UpdateBatch};
use crate::metrics::Metrics;

/// Most messages handed on in one batch.
const MAX_BATCH: usize = 2_000;
/// How long to keep filling a batch once its first message is there.
const LINGER: Duration = Duration::from_millis(2);

/// What a consumer reads and where it hands it.
#[derive(Clone)]
pub enum Feed {
    /// `tt_raw_data` into the processor; `reload` is told on every partition assignment.
    Raw { target: Recipient<RawBatch>, reload: Recipient<Restart>, catalog: Arc<InstrumentCatalog> },
    /// `tt_processed_data` into a cache.
    Processed { target: Recipient<UpdateBatch> },
}

struct RebalanceContext {
    reload: Option<Recipient<Restart>>,
    health: Arc<ActorHealth>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
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
}

/// Built field by field: every field is an input the supervisor hands over as it is.
pub struct KafkaConsumerActor {
    pub settings: KafkaSettings,
    pub topic: &'static str,
    /// Joins the consumer group `<group>-<group_suffix>`.
    pub group_suffix: &'static str,
    pub feed: Feed,
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
        let context = RebalanceContext { reload, health: self.health.clone() };
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
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl Pump {
    async fn run(self) {
        loop {
            let batch = self.next_batch().await;
            if batch.is_empty() {
                continue;
            }
            self.deliver(&batch).await;
            self.commit(&batch);
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
        batch.push(take(&first));
        drop(first);
        while batch.len() < MAX_BATCH {
            match actix_rt::time::timeout(LINGER, self.consumer.recv()).await {
                Ok(Ok(m)) => batch.push(take(&m)),
                _ => break,
            }
        }
        self.metrics.kafka_consumed.with_label_values(&[self.topic]).inc_by(batch.len() as u64);
        batch
    }

    /// Hands the batch on until the next actor has stored it.
    async fn deliver(&self, batch: &[Received]) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        match &self.feed {
            Feed::Raw { target, catalog, .. } => {
                let mut events = Vec::with_capacity(batch.len());
                // The message each event came from, to dead-letter what the processor refuses.
                let mut origins = Vec::with_capacity(batch.len());
                let now = now_micros();
                for message in batch {
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
                            origins.push(message);
                        }
                        Err(e) => self.dead_letter(message, &e.to_string()).await,
                    }
                }
                if events.is_empty() {
                    return;
                }
                loop {
                    let attempt = async {
                        let ack = target
                            .send(RawBatch { events: events.clone() })
                            .await
                            .map_err(|e| e.to_string())?
                            .map_err(|e| e.to_string())?;
                        let refused = ack.refused;
                        ack.durable.wait().await.map_err(|e| e.to_string())?;
                        Ok::<_, String>(refused)
                    };
                    match attempt.await {
                        Ok(refused) => {
                            // Refused events were not applied: they go to the dead-letter topic
                            // with the reason before the batch's offsets are committed.
                            for refusal in refused {
                                if let Some(message) = origins.get(refusal.index) {
                                    let reason = format!("refused by the processor: {}", refusal.error);
                                    self.dead_letter(message, &reason).await;
                                }
                            }
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(topic = self.topic, error = %e, "the processor did not store the batch; offering it again");
                            self.health.set_detail(Some(format!("waiting for the processor: {e}")));
                            actix_rt::time::sleep(backoff.next_delay()).await;
                        }
                    }
                }
            }
            Feed::Processed { target } => {
                let mut updates = Vec::with_capacity(batch.len());
                for message in batch {
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
                    return;
                }
                let updates: Arc<[Published]> = updates.into();
                loop {
                    match target.send(UpdateBatch { updates: updates.clone() }).await {
                        Ok(Ok(())) => break,
                        Ok(Err(e)) => {
                            tracing::warn!(topic = self.topic, error = %e, "the cache did not store the batch; offering it again")
                        }
                        Err(e) => {
                            tracing::warn!(topic = self.topic, error = %e, "the cache is unavailable; offering the batch again")
                        }
                    }
                    actix_rt::time::sleep(backoff.next_delay()).await;
                }
            }
        }
        self.health.handled_n(batch.len() as u64);
    }

    /// Sends a message that cannot be used to the dead-letter topic, with the reason and where
    /// it came from in headers. Keeps trying: a poison message must not be lost either.
    async fn dead_letter(&self, message: &Received, reason: &str) {
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
                Ok(_) => return,
                Err((e, _)) => {
                    tracing::warn!(error = %e, "dead-letter produce failed; retrying");
                    actix_rt::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Commits the next offset of every partition in the batch.
    fn commit(&self, batch: &[Received]) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let entry = next.entry(message.partition).or_insert(0);
            *entry = (*entry).max(message.offset + 1);
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in next {
            if list.add_partition_offset(self.topic, partition, Offset::Offset(offset)).is_err() {
                continue;
            }
        }
        // A failed commit (e.g. during a rebalance) means the batch is read again: harmless.
        if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
            tracing::warn!(topic = self.topic, error = %e, "offset commit failed; the batch may be read again");
        }
    }
}

fn take(message: &rdkafka::message::BorrowedMessage<'_>) -> Received {
    Received {
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
