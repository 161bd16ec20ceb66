//! A market simulator: a mean-reverting random walk of quotes on each instrument's tick grid,
//! trades at the bid or the ask, and fills for a few accounts. Deterministic for a given seed.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::domain::{
    EventBody, EventIdAllocator, Fill, InstrumentCatalog, InstrumentSpec, Micros, Quote, Side, Trade, ValidEvent,
};

pub const SIM_ACCOUNTS: [&str; 3] = ["ACC1", "ACC2", "ACC3"];

struct SimInstrument {
    spec: InstrumentSpec,
    /// Bid and reference price in ticks.
    bid_ticks: i64,
    reference_ticks: i64,
    spread_ticks: i64,
}

impl SimInstrument {
    fn price(&self, ticks: i64) -> Decimal {
        (Decimal::from(ticks) * self.spec.tick_size).normalize()
    }

    fn bid(&self) -> Decimal {
        self.price(self.bid_ticks)
    }

    fn ask(&self) -> Decimal {
        self.price(self.bid_ticks + self.spread_ticks)
    }
}

pub struct Simulator {
    instruments: Vec<SimInstrument>,
    ids: EventIdAllocator,
    rng: SmallRng,
    next_order: u64,
}

impl Simulator {
    pub fn new(catalog: &InstrumentCatalog, seed: u64) -> Self {
        let instruments = catalog
            .iter()
            .map(|spec| {
                let ticks = (spec.reference_price / spec.tick_size).trunc();
                let ticks = i64::try_from(ticks.mantissa() / 10i128.pow(ticks.scale())).unwrap_or(1).max(1);
                SimInstrument { spec: spec.clone(), bid_ticks: ticks, reference_ticks: ticks, spread_ticks: 1 }
            })
            .collect();
        Self { instruments, ids: EventIdAllocator::new("sim"), rng: SmallRng::seed_from_u64(seed), next_order: 1 }
    }

    /// The next `n` events, all stamped `now`.
    pub fn generate(&mut self, n: usize, now: Micros) -> Vec<ValidEvent> {
        let mut events = Vec::with_capacity(n);
        if self.instruments.is_empty() {
            return events;
        }
        for _ in 0..n {
            let index = self.rng.random_range(0..self.instruments.len());
            let roll: f64 = self.rng.random();
            let body = if roll < 0.65 {
                self.quote(index)
            } else if roll < 0.97 {
                self.trade(index)
            } else {
                self.fill(index, now)
            };
            let id = self.ids.next(now);
            events.push(ValidEvent { id, ts: now, ingest_ts: now, body, trace: None });
        }
        events
    }

    fn quote(&mut self, index: usize) -> EventBody {
        let rng = &mut self.rng;
        let inst = &mut self.instruments[index];
        // Pull back towards the reference: the further away (in 0.5% steps), the likelier.
        let band = (inst.reference_ticks / 200).max(1);
        let drift = ((inst.reference_ticks - inst.bid_ticks) as f64 / band as f64 * 0.1).clamp(-0.3, 0.3);
        let roll: f64 = rng.random();
        if roll < 0.3 + drift.max(0.0) {
            inst.bid_ticks += 1;
        } else if roll > 0.7 + drift.min(0.0) {
            inst.bid_ticks -= 1;
        }
        inst.bid_ticks = inst.bid_ticks.max(1);
        inst.spread_ticks = if rng.random_bool(0.85) { 1 } else { 2 };
        EventBody::Quote(Quote {
            instrument: inst.spec.symbol.clone(),
            bid: inst.bid(),
            bid_qty: rng.random_range(1..=60),
            ask: inst.ask(),
            ask_qty: rng.random_range(1..=60),
        })
    }

    fn trade(&mut self, index: usize) -> EventBody {
        let aggressor = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let qty = 1 + (self.rng.random::<f64>().powi(3) * 25.0) as i64;
        let inst = &self.instruments[index];
        let price = if aggressor == Side::Buy { inst.ask() } else { inst.bid() };
        EventBody::Trade(Trade { instrument: inst.spec.symbol.clone(), price, qty, aggressor })
    }

    fn fill(&mut self, index: usize, now: Micros) -> EventBody {
        let account = SIM_ACCOUNTS[self.rng.random_range(0..SIM_ACCOUNTS.len())];
        let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
        let qty = self.rng.random_range(1..=5);
        let order = self.next_order;
        self.next_order += 1;
        let inst = &self.instruments[index];
        let price = if side == Side::Buy { inst.ask() } else { inst.bid() };
        EventBody::Fill(Fill {
            account: account.to_owned(),
            order_id: format!("SO-{now}-{order}"),
            fill_id: format!("SF-{now}-{order}"),
            instrument: inst.spec.symbol.clone(),
            side,
            price,
            qty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_pass_validation_and_mix_types() {
        let catalog = InstrumentCatalog::default_futures();
        let mut sim = Simulator::new(&catalog, 7);
        let events = sim.generate(5_000, 1_000_000);
        assert_eq!(events.len(), 5_000);
        let mut kinds = std::collections::HashMap::new();
        for e in &events {
            *kinds.entry(e.body.kind()).or_insert(0) += 1;
            let raw = e.to_raw();
            let again = raw.validate(&catalog, 0, &mut || unreachable!());
            assert!(again.is_ok(), "{:?}: {:?}", e, again);
        }
        assert!(kinds["quote"] > 2_500 && kinds["trade"] > 1_000 && kinds["fill"] > 50, "{kinds:?}");
        // Strictly increasing ids even with one timestamp.
        assert!(events.windows(2).all(|w| w[0].id.seq < w[1].id.seq));
    }

    #[test]
    fn prices_stay_near_their_reference() {
        let catalog = InstrumentCatalog::default_futures();
        let mut sim = Simulator::new(&catalog, 1);
        sim.generate(200_000, 0);
        for inst in &sim.instruments {
            let drift = (inst.bid_ticks - inst.reference_ticks).abs() as f64 / inst.reference_ticks as f64;
            assert!(drift < 0.05, "{} drifted {:.3}", inst.spec.symbol, drift);
        }
    }
}
