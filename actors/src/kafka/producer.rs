//! `KafkaProducerActor`: the sending side of a Kafka hop. The same actor type carries hop 1
//! (`Handler<RawBatch>`, to `tt_raw_data`, keyed by instrument) and hop 2
//! (`Handler<UpdateBatch>`, to `tt_processed_data`, keyed by instrument or account), so the
//! ingester and the processor do not know whether their next hop is local or Kafka.
//!
//! A batch is acknowledged once the broker has every message of it (`acks=all`); batches are
//! handled one at a time so their order on each partition is the order they arrived in.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};

use super::KafkaSettings;
use crate::domain::Topic;
use crate::domain::trace_context::{TRACEPARENT, to_traceparent};
use crate::health::ActorHealth;
use crate::messages::{BatchAck, Durable, HopError, RawBatch, UpdateBatch};
use crate::metrics::Metrics;

/// One message of a hop: its partitioning key, its JSON, and the trace context of a sampled
/// event or update (the W3C `traceparent` header, as OpenTelemetry's Kafka conventions carry it).
struct Outgoing {
    key: String,
    payload: String,
    traceparent: Option<String>,
}

pub struct KafkaProducerActor {
    settings: KafkaSettings,
    producer: Option<FutureProducer>,
    topic: &'static str,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl KafkaProducerActor {
    pub fn new(settings: KafkaSettings, topic: &'static str, metrics: Arc<Metrics>, health: Arc<ActorHealth>) -> Self {
        Self { settings, producer: None, topic, metrics, health }
    }

    /// Enqueues every message in order and waits for all deliveries.
    fn produce(&mut self, messages: Vec<Outgoing>) -> ResponseActFuture<Self, Result<(), HopError>> {
        let Some(producer) = self.producer.clone() else {
            let err = HopError::Unavailable(format!("no Kafka producer for {}", self.topic));
            return Box::pin(fut::ready(Err(err)));
        };
        let topic = self.topic;
        let count = messages.len() as u64;
        let send = async move {
            let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(messages.len());
            for message in &messages {
                let mut record = FutureRecord::to(topic).key(&message.key).payload(&message.payload);
                if let Some(traceparent) = &message.traceparent {
                    record = record
                        .headers(OwnedHeaders::new().insert(Header { key: TRACEPARENT, value: Some(traceparent) }));
                }
                // A full local queue means the broker is slow or away: wait, keep the order.
                let delivery = loop {
                    match producer.send_result(record) {
                        Ok(delivery) => break delivery,
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            record = back;
                            actix_rt::time::sleep(Duration::from_millis(2)).await;
                        }
                        Err((e, _)) => return Err(HopError::Unavailable(format!("Kafka produce to {topic}: {e}"))),
                    }
                };
                deliveries.push(delivery);
            }
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => return Err(HopError::Unavailable(format!("Kafka delivery to {topic}: {e}"))),
                    Err(_) => return Err(HopError::Unavailable(format!("Kafka producer for {topic} was dropped"))),
                }
            }
            Ok(())
        };
        Box::pin(send.into_actor(self).map(move |result, act, _| {
            match &result {
                Ok(()) => {
                    act.health.handled_n(count);
                    act.health.set_detail(Some("connected".into()));
                    act.metrics.kafka_produced.with_label_values(&[topic]).inc_by(count);
                }
                Err(e) => {
                    act.health.set_detail(Some(e.to_string()));
                    act.metrics.kafka_errors.with_label_values(&[topic]).inc();
                }
            }
            result
        }))
    }
}

impl Actor for KafkaProducerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        match self.settings.producer_config().create::<FutureProducer>() {
            Ok(producer) => {
                self.producer = Some(producer);
                self.health.set_running();
            }
            Err(e) => {
                tracing::error!(topic = self.topic, error = %e, "cannot create the Kafka producer; retrying in 1 s");
                self.health.set_detail(Some(e.to_string()));
                crate::supervision::restart_later::<Self>(ctx);
            }
        }
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        // Hand over what librdkafka still holds before the producer goes.
        if let Some(producer) = &self.producer {
            let _ = producer.flush(Duration::from_secs(5));
        }
        Running::Stop
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(KafkaProducerActor, reset = |act| act.producer = None);

impl Handler<RawBatch> for KafkaProducerActor {
    type Result = AtomicResponse<Self, Result<BatchAck, HopError>>;

    fn handle(&mut self, batch: RawBatch, _: &mut Context<Self>) -> Self::Result {
        let accepted = batch.events.len();
        let messages = batch
            .events
            .iter()
            .map(|e| Outgoing {
                key: e.body.instrument().to_owned(),
                payload: serde_json::to_string(&e.to_raw()).unwrap_or_default(),
                traceparent: e.trace.as_ref().map(to_traceparent),
            })
            .collect();
        // Acknowledged by the broker: durable as far as this hop goes.
        let ack = self.produce(messages).map(move |r, _, _| {
            r.map(|()| BatchAck { accepted, duplicates: 0, refused: Vec::new(), durable: Durable::already() })
        });
        AtomicResponse::new(Box::pin(ack))
    }
}

impl Handler<UpdateBatch> for KafkaProducerActor {
    type Result = AtomicResponse<Self, Result<(), HopError>>;

    fn handle(&mut self, batch: UpdateBatch, _: &mut Context<Self>) -> Self::Result {
        let messages = batch
            .updates
            .iter()
            .map(|u| {
                let key = match u.update.topic() {
                    Topic::Instrument(s) | Topic::Prints(s) => s,
                    Topic::Account(a) => a,
                };
                // The JSON carries the trace context too (for Redis and the sessions); the header
                // is what Kafka tooling reads.
                Outgoing {
                    key: key.to_owned(),
                    payload: u.to_json(),
                    traceparent: u.trace.as_ref().map(to_traceparent),
                }
            })
            .collect();
        AtomicResponse::new(self.produce(messages))
    }
}
