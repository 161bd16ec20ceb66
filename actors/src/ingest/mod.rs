//! `IngesterActor`: reads a source (the simulator, a replay file, or events pushed over HTTP),
//! validates and stamps the events, and forwards them on hop 1.
//!
//! Everything the ingester forwards goes out one batch at a time (`ctx.wait`), so the order
//! of every source is kept end to end (deduplication relies on it) and a slow processor slows
//! the source down instead of growing a queue. A batch the next hop refused is kept and sent
//! again on the next tick: nothing is dropped.

pub mod replay;
pub mod simulator;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use opentelemetry::KeyValue;

use crate::domain::ids::API_SOURCE;
use crate::domain::{EventIdAllocator, InstrumentCatalog, TimeWindow, TraceContext, ValidEvent};
use crate::health::{ActorHealth, now_micros};
use crate::messages::{IngestError, IngestEvents, IngestReceipt, RawBatch, StopIntake};
use crate::metrics::Metrics;
use replay::Replay;
use simulator::Simulator;

/// How often the simulator and the replay produce a batch.
const TICK: Duration = Duration::from_millis(10);
/// At most this much time's worth of simulated events is generated at once after a stall.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// Lines read per tick when a replay runs at full speed.
const REPLAY_CHUNK: usize = 5_000;

#[derive(Debug, Clone)]
pub enum SourceConfig {
    /// Only events pushed over HTTP.
    None,
    Simulator {
        rate: u32,
        seed: u64,
    },
    /// `rate` events/s, or 0 for as fast as the pipeline takes them.
    Replay {
        path: PathBuf,
        rate: u32,
    },
}

enum Source {
    None,
    Simulator { sim: Simulator, rate: u32 },
    Replay { replay: Option<Replay>, path: PathBuf, rate: u32 },
}

pub struct IngesterActor {
    config: SourceConfig,
    source: Source,
    catalog: Arc<InstrumentCatalog>,
    hop: Recipient<RawBatch>,
    api_ids: EventIdAllocator,
    /// How far from the ingest time a pushed event may be dated.
    window: TimeWindow,
    /// Events owed to the configured rate, carried between ticks.
    owed: f64,
    last_tick: Instant,
    /// A batch the next hop did not take; sent again before anything new.
    unsent: Option<(&'static str, Vec<ValidEvent>)>,
    metrics: Arc<Metrics>,
    health: Arc<ActorHealth>,
}

impl IngesterActor {
    pub fn new(
        config: SourceConfig,
        catalog: Arc<InstrumentCatalog>,
        hop: Recipient<RawBatch>,
        window: TimeWindow,
        metrics: Arc<Metrics>,
        health: Arc<ActorHealth>,
    ) -> Self {
        Self {
            config,
            source: Source::None,
            catalog,
            hop,
            api_ids: EventIdAllocator::new(API_SOURCE),
            window,
            owed: 0.0,
            last_tick: Instant::now(),
            unsent: None,
            metrics,
            health,
        }
    }

    /// Opens the configured source. A restart keeps the source it had (the simulator's
    /// prices, the replay's position).
    fn open_source(&mut self) {
        if !matches!(self.source, Source::None) {
            return;
        }
        self.source = match &self.config {
            SourceConfig::None => Source::None,
            SourceConfig::Simulator { rate, seed } => {
                tracing::info!(rate, "market simulator started");
                Source::Simulator { sim: Simulator::new(&self.catalog, *seed), rate: *rate }
            }
            SourceConfig::Replay { path, rate } => match Replay::open(path) {
                Ok(replay) => {
                    tracing::info!(path = %path.display(), rate, "replay started");
                    Source::Replay { replay: Some(replay), path: path.clone(), rate: *rate }
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "cannot open the replay file");
                    self.health.set_detail(Some(format!("cannot open {}: {e}", path.display())));
                    Source::Replay { replay: None, path: path.clone(), rate: *rate }
                }
            },
        };
    }

    /// Events owed to `rate` since the last tick.
    fn owed_now(&mut self, rate: u32) -> usize {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last_tick).min(MAX_CATCH_UP);
        self.last_tick = now;
        self.owed += rate as f64 * elapsed.as_secs_f64();
        let n = self.owed.floor();
        self.owed -= n;
        n as usize
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if let Some((source, events)) = self.unsent.take() {
            self.forward(source, events, ctx);
            return;
        }
        let now = now_micros();
        let rate = match &self.source {
            Source::None => return,
            Source::Simulator { rate, .. } => *rate,
            Source::Replay { rate, .. } => *rate,
        };
        let owed = if rate == 0 { REPLAY_CHUNK } else { self.owed_now(rate) };
        if owed == 0 {
            return;
        }
        match &mut self.source {
            Source::None => {}
            Source::Simulator { sim, .. } => {
                let mut events = sim.generate(owed, now);
                start_traces(&mut events, None);
                self.forward("simulator", events, ctx);
            }
            Source::Replay { replay: Some(replay), path, .. } if !replay.finished => {
                match replay.next_chunk(owed.min(REPLAY_CHUNK), &self.catalog, &self.window, now) {
                    Ok(chunk) => {
                        for (line, error) in &chunk.rejected {
                            tracing::warn!(path = %path.display(), line, %error, "replay line rejected");
                        }
                        self.metrics.events_rejected.with_label_values(&["replay"]).inc_by(chunk.rejected.len() as u64);
                        let (accepted, rejected, finished) = (replay.accepted, replay.rejected, replay.finished);
                        self.health.set_detail(Some(format!(
                            "replay {}: {accepted} events read, {rejected} rejected{}",
                            path.display(),
                            if finished { ", finished" } else { "" }
                        )));
                        if finished {
                            tracing::info!(path = %path.display(), accepted, rejected, "replay finished");
                        }
                        if !chunk.events.is_empty() {
                            let mut events = chunk.events;
                            start_traces(&mut events, None);
                            self.forward("replay", events, ctx);
                        }
                    }
                    Err(e) => {
                        tracing::error!(path = %path.display(), error = %e, "replay read failed; stopping the replay");
                        self.health.set_detail(Some(format!("replay read failed: {e}")));
                        replay.finished = true;
                    }
                }
            }
            Source::Replay { .. } => {}
        }
    }

    /// Sends one batch on hop 1 and pauses the actor until the hop took it.
    fn forward(&mut self, source: &'static str, events: Vec<ValidEvent>, ctx: &mut Context<Self>) {
        let count = events.len() as u64;
        let request = self.hop.send(RawBatch { events: events.clone() });
        request
            .into_actor(self)
            .map(move |result, act, _| match result {
                Ok(Ok(_)) => {
                    act.metrics.events_ingested.with_label_values(&[source]).inc_by(count);
                    act.health.handled_n(count);
                    act.health.set_queue_depth(0);
                }
                Ok(Err(e)) => act.keep_unsent(source, events, &e.to_string()),
                Err(e) => act.keep_unsent(source, events, &e.to_string()),
            })
            .wait(ctx);
    }

    fn keep_unsent(&mut self, source: &'static str, events: Vec<ValidEvent>, error: &str) {
        tracing::warn!(source, events = events.len(), error, "next hop did not take the batch; retrying");
        self.health.set_queue_depth(events.len() as i64);
        self.unsent = Some((source, events));
    }
}

/// Starts the trace of each event the sampling picks (or that continues `parent`, a client's
/// trace): its `ttpulse.ingest` span.
fn start_traces(events: &mut [ValidEvent], parent: Option<&TraceContext>) {
    for event in events {
        event.trace = crate::trace::ingest(parent, event.ingest_ts, || {
            vec![
                KeyValue::new("ttpulse.event_id", event.id.to_string()),
                KeyValue::new("ttpulse.instrument", event.body.instrument().to_owned()),
                KeyValue::new("ttpulse.kind", event.body.kind()),
            ]
        });
    }
}

impl Actor for IngesterActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(64);
        self.open_source();
        self.last_tick = Instant::now();
        self.health.set_running();
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.health.set_stopped();
    }
}

crate::supervised!(IngesterActor);

impl Handler<StopIntake> for IngesterActor {
    type Result = ();

    /// Stops the source (simulator or replay). Events already taken stay on their way; pushed
    /// events are refused by the HTTP server, which stops accepting first.
    fn handle(&mut self, _: StopIntake, _: &mut Context<Self>) {
        tracing::info!("intake stopped");
        self.source = Source::None;
        self.config = SourceConfig::None;
    }
}

impl Handler<IngestEvents> for IngesterActor {
    type Result = AtomicResponse<Self, Result<(IngestReceipt, crate::messages::Durable), IngestError>>;

    fn handle(&mut self, msg: IngestEvents, _: &mut Context<Self>) -> Self::Result {
        let now = now_micros();
        let mut events = Vec::with_capacity(msg.events.len());
        for (index, raw) in msg.events.into_iter().enumerate() {
            let ids = &mut self.api_ids;
            let supplied_id = raw.event_id.is_some();
            let checked = raw.entering().validate(&self.catalog, now, &mut || ids.next(now)).and_then(|event| {
                event.check_pushed(now, &self.window, supplied_id)?;
                Ok(event)
            });
            match checked {
                Ok(event) => events.push(event),
                Err(error) => {
                    self.metrics.events_rejected.with_label_values(&["api"]).inc();
                    return AtomicResponse::new(Box::pin(fut::ready(Err(IngestError::Invalid { index, error }))));
                }
            }
        }
        start_traces(&mut events, msg.trace.as_ref());
        let event_ids: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        let count = events.len() as u64;
        let request = self.hop.send(RawBatch { events });
        let forward = async move {
            let ack = match request.await.map_err(crate::messages::HopError::from) {
                Ok(Ok(ack)) => ack,
                Ok(Err(error)) | Err(error) => return Err(IngestError::Hop { error, event_ids }),
            };
            let receipt =
                IngestReceipt { accepted: ack.accepted, duplicates: ack.duplicates, event_ids, refused: ack.refused };
            Ok((receipt, ack.durable))
        }
        .into_actor(self)
        .map(move |result, act, _| {
            if result.is_ok() {
                act.metrics.events_ingested.with_label_values(&["api"]).inc_by(count);
                act.health.handled_n(count);
            }
            result
        });
        AtomicResponse::new(Box::pin(forward))
    }
}
