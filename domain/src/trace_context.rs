//! The trace context an event and its updates carry from hop to hop (W3C Trace Context, as
//! OpenTelemetry reads and writes it). Only sampled contexts are carried: an unsampled event
//! carries nothing, so tracing costs the hot path nothing but a `None`.
//!
//! On the wire it is the `traceparent` string (`00-<trace id>-<span id>-01`): a Kafka header on
//! hops 1 and 2, a field of the JSON update in Redis and on the WebSocket (Pub/Sub has no
//! headers), the request header of `POST /api/ingest`.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The name of the header (and of the JSON field) that carries a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A sampled trace context: the span of the hop an event or update passed last.
pub type TraceContext = SpanContext;

/// The `traceparent` value of a context.
pub fn to_traceparent(context: &TraceContext) -> String {
    let mut carrier: HashMap<String, String> = HashMap::with_capacity(1);
    let parent = Context::new().with_remote_span_context(context.clone());
    TraceContextPropagator::new().inject_context(&parent, &mut carrier);
    carrier.remove(TRACEPARENT).unwrap_or_default()
}

/// The context a `traceparent` value names, if it is valid and sampled; anything else (garbage,
/// an unknown version, all-zero ids, an unsampled flag) is `None`: a bad trace header never
/// refuses the event it came with.
pub fn from_traceparent(value: &str) -> Option<TraceContext> {
    // A valid version 00 value is 55 characters; a future version may be longer, not this long.
    if value.len() > 512 || !is_canonical(value) {
        return None;
    }
    let carrier = HashMap::from([(TRACEPARENT.to_owned(), value.to_owned())]);
    let extracted = TraceContextPropagator::new().extract(&carrier);
    let context = extracted.span().span_context().clone();
    (context.is_valid() && context.is_sampled()).then_some(context)
}

/// The W3C form: `version-traceid-parentid-flags` of 2, 32, 16 and 2 lower-case hex digits
/// (version 00 has exactly these; a later version may append fields). OpenTelemetry's parser
/// reads each field as a number, so `00-1-1-01` would pass it.
fn is_canonical(value: &str) -> bool {
    let mut fields = value.split('-');
    let hex = |field: Option<&str>, len: usize| {
        field.is_some_and(|f| f.len() == len && f.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    };
    let version = fields.next();
    let head = hex(version, 2) && hex(fields.next(), 32) && hex(fields.next(), 16) && hex(fields.next(), 2);
    head && (version != Some("00") || fields.next().is_none())
}

/// `#[serde(with = "trace_context::json")]` for an `Option<TraceContext>` field: written as the
/// `traceparent` string, read leniently (a value that is not a sampled context reads as `None`).
pub mod json {
    use serde::de::IgnoredAny;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{TraceContext, from_traceparent, to_traceparent};

    pub fn serialize<S: Serializer>(context: &Option<TraceContext>, serializer: S) -> Result<S::Ok, S::Error> {
        match context {
            Some(context) => serializer.serialize_str(&to_traceparent(context)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<TraceContext>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Loose {
            Text(String),
            Other(IgnoredAny),
        }
        Ok(match Loose::deserialize(deserializer)? {
            Loose::Text(text) => from_traceparent(&text),
            Loose::Other(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_sampled_traceparent_round_trips() {
        let context = from_traceparent(SAMPLED).expect("valid");
        assert_eq!(context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(context.span_id().to_string(), "00f067aa0ba902b7");
        assert!(context.is_remote());
        assert_eq!(to_traceparent(&context), SAMPLED);
    }

    #[test]
    fn anything_but_a_valid_sampled_context_is_none() {
        let long = "0".repeat(10_000);
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", // not sampled
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // forbidden version
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // upper case
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01<script>",
            long.as_str(),
        ] {
            assert_eq!(from_traceparent(bad), None, "{bad:.80}");
        }
    }

    /// W3C Trace Context: the trace id is 32 and the span id 16 lowercase hex digits, the
    /// version and flags 2 each. OpenTelemetry's parser reads them with `from_str_radix`, which
    /// takes shorter values and a leading `+`; a client could then force sampling under a
    /// trace id like `...0001` with a 9-byte header.
    #[test]
    fn attack_non_canonical_traceparents_are_none() {
        for bad in [
            "00-1-1-01",                                               // short ids
            "00-+4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", // sign in the trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-+0f067aa0ba902b-01",  // sign in the span id
            "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",   // one-digit version, flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1", // sign in the flags
        ] {
            assert_eq!(from_traceparent(bad), None, "{bad}");
        }
        // A future version with more fields is read as version 00 (W3C), an upper-case one is not.
        assert!(from_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn json_fields_read_leniently() {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Carrier {
            #[serde(default, with = "json", skip_serializing_if = "Option::is_none")]
            traceparent: Option<TraceContext>,
        }
        let read = |text: &str| serde_json::from_str::<Carrier>(text).expect("never refused").traceparent;
        let context = read(&format!(r#"{{"traceparent":"{SAMPLED}"}}"#)).expect("sampled");
        assert_eq!(to_traceparent(&context), SAMPLED);
        assert_eq!(read(r#"{"traceparent":"nonsense"}"#), None);
        assert_eq!(read(r#"{"traceparent":null}"#), None);
        assert_eq!(read(r#"{"traceparent":{"a":[1,2]}}"#), None);
        assert_eq!(read("{}"), None);
        let written = serde_json::to_string(&Carrier { traceparent: Some(context) }).unwrap();
        assert_eq!(written, format!(r#"{{"traceparent":"{SAMPLED}"}}"#));
        assert_eq!(serde_json::to_string(&Carrier { traceparent: None }).unwrap(), "{}");
    }
}
