//! Supervision that survives a panic. actix's `Supervisor` restarts an actor that *stops*; a
//! panic inside a handler instead ends the actor's task for good, and its `Addr` answers
//! "Mailbox has closed" from then on. So handlers run their work through [`contain`]: a panic
//! becomes an error, is logged and recorded in the actor's health, and the actor stops itself,
//! which its `Supervisor` answers with a restart (and the actor reloads its state).

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::time::Duration;

use actix::{Actor, ActorContext, AsyncContext};

use crate::health::ActorHealth;
use crate::messages::HopError;

/// The supervision every ttpulse actor has, written once. For an actor with `health:
/// Arc<ActorHealth>` and `metrics: Arc<Metrics>` fields it implements:
/// - `Supervised::restarting`: the restart is recorded in the actor's health and counted in
///   `ttpulse_actor_restarts_total{actor}` under the actor's health name (one name everywhere),
///   then `reset` (if given) drops what the restarted actor must rebuild;
/// - `Handler<Restart>` (admin `POST /admin/actors/{name}/restart`, and a processor's reload on a
///   partition assignment): the actor stops, and its `Supervisor` starts it again.
#[macro_export]
macro_rules! supervised {
    ($actor:ty $(, reset = $reset:expr)?) => {
        impl ::actix::Supervised for $actor {
            fn restarting(&mut self, _: &mut ::actix::Context<Self>) {
                self.health.restarting();
                self.metrics.actor_restarts.with_label_values(&[self.health.name.as_str()]).inc();
                $( let reset: fn(&mut $actor) = $reset; reset(self); )?
            }
        }

        impl ::actix::Handler<$crate::messages::Restart> for $actor {
            type Result = ();

            fn handle(&mut self, _: $crate::messages::Restart, ctx: &mut ::actix::Context<Self>) {
                ::tracing::info!(actor = %self.health.name, "restart requested");
                ::actix::ActorContext::stop(ctx);
            }
        }
    };
}

/// Runs `work`; a panic in it is caught, logged and recorded in `health` (state `crashed`,
/// last error), and `Err` carries its message. The caller then stops the actor.
pub fn contain<R>(health: &ActorHealth, work: impl FnOnce() -> R) -> Result<R, String> {
    catch_panic(work).map_err(|message| {
        tracing::error!(actor = %health.name, panic = %message, "actor handler panicked; restarting the actor");
        health.crashed(&format!("panicked: {message}"));
        message
    })
}

/// Runs `work`; a panic in it becomes `Err` with its message, and nothing else (for a piece of
/// work whose failure the caller handles without restarting the actor).
pub fn catch_panic<R>(work: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(work)).map_err(|payload| panic_message(payload.as_ref()))
}

/// [`contain`] for a handler of actor `A`: on a panic the actor is stopped (its supervisor
/// restarts it) and the sender is answered that the hop is unavailable, so it offers again.
pub fn contain_or_restart<A, R>(
    health: &ActorHealth,
    ctx: &mut A::Context,
    work: impl FnOnce() -> R,
) -> Result<R, HopError>
where
    A: Actor,
    A::Context: ActorContext + AsyncContext<A>,
{
    contain(health, work).map_err(|panic| {
        // Stopped right after this answer goes out (a stop inside the handler can drop it).
        ctx.run_later(Duration::ZERO, |_, ctx| ctx.stop());
        HopError::Unavailable(format!("{} crashed ({panic}) and is restarting", health.name))
    })
}

/// How long an actor that could not start waits before it stops for a fresh start.
pub const RESTART_DELAY: Duration = Duration::from_secs(1);

/// An actor that cannot go on (its broker or database is unreachable while it starts) stops
/// after [`RESTART_DELAY`], and its supervisor starts it afresh.
pub fn restart_later<A>(ctx: &mut A::Context)
where
    A: Actor,
    A::Context: ActorContext + AsyncContext<A>,
{
    ctx.run_later(RESTART_DELAY, |_, ctx| ctx.stop());
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{ActorState, HealthRegistry};

    #[test]
    fn a_panic_becomes_an_error_recorded_in_health() {
        let registry = HealthRegistry::new();
        let health = registry.register("x", "X");
        health.set_running();
        assert_eq!(contain(&health, || 7), Ok(7));
        let err = contain(&health, || -> u8 { panic!("boom {}", 1) }).unwrap_err();
        assert_eq!(err, "boom 1");
        let report = health.report();
        assert_eq!(report.state, ActorState::Crashed);
        assert_eq!(report.panics, 1);
        assert_eq!(report.last_error.map(|e| e.message), Some("panicked: boom 1".to_owned()));
        assert!(!registry.ready(), "a crashed actor makes the process not ready");
    }
}
