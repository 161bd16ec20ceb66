//! Replay of a JSON-lines file of raw events (the ingest wire format, one event per line).
//! Lines without an `event_id` get `<source>:<line number>`, so replaying the same file again
//! is recognised as a duplicate and changes nothing.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use crate::domain::{EventId, InstrumentCatalog, Micros, RawEvent, TimeWindow, ValidEvent, ValidationError};

pub struct Replay {
    path: PathBuf,
    source: String,
    reader: BufReader<File>,
    line_no: u64,
    pub accepted: u64,
    pub rejected: u64,
    pub finished: bool,
}

/// One read from the file.
pub struct Chunk {
    pub events: Vec<ValidEvent>,
    /// Lines that could not be used: line number and why.
    pub rejected: Vec<(u64, ValidationError)>,
}

impl Replay {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let stem = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let clean: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
            .take(48)
            .collect();
        Ok(Self {
            path: path.to_owned(),
            source: format!("replay-{clean}"),
            reader: BufReader::new(file),
            line_no: 0,
            accepted: 0,
            rejected: 0,
            finished: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads up to `max` non-empty lines.
    pub fn next_chunk(
        &mut self,
        max: usize,
        catalog: &InstrumentCatalog,
        window: &TimeWindow,
        now: Micros,
    ) -> std::io::Result<Chunk> {
        let mut chunk = Chunk { events: Vec::new(), rejected: Vec::new() };
        let mut line = String::new();
        while chunk.events.len() + chunk.rejected.len() < max {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                self.finished = true;
                break;
            }
            self.line_no += 1;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let line_no = self.line_no;
            let source = &self.source;
            let decoded = RawEvent::decode(text.as_bytes()).and_then(|raw| {
                let supplied_id = raw.event_id.is_some();
                let event =
                    raw.entering().validate(catalog, now, &mut || EventId { source: source.clone(), seq: line_no })?;
                event.check_replayed(now, window, supplied_id)?;
                Ok(event)
            });
            match decoded {
                Ok(event) => chunk.events.push(event),
                Err(e) => chunk.rejected.push((line_no, e)),
            }
        }
        self.accepted += chunk.events.len() as u64;
        self.rejected += chunk.rejected.len() as u64;
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_valid_lines_and_reports_bad_ones_by_line() {
        let dir = std::env::temp_dir().join(format!("ttpulse-replay-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("day 1.jsonl");
        let mut f = File::create(&path).unwrap();
        writeln!(f, r#"{{"type":"trade","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}}"#).unwrap();
        writeln!(f).unwrap();
        writeln!(f, r#"{{"type":"trade","instrument":"NOPE","price":"1","qty":1,"aggressor":"buy"}}"#).unwrap();
        writeln!(f, r#"{{"type":"quote","event_id":"feed:9","instrument":"ESZ6","bid":"6850","bid_qty":1,"ask":"6850.25","ask_qty":1}}"#).unwrap();
        writeln!(f, "not json").unwrap();
        // Ids of ttpulse's own sources once made its later events duplicates for good, and a
        // line dated in the future froze the candles.
        writeln!(f, r#"{{"type":"trade","event_id":"sim:9007199254740991","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}}"#).unwrap();
        writeln!(f, r#"{{"type":"trade","event_id":"api:9007199254740991","instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}}"#).unwrap();
        writeln!(
            f,
            r#"{{"type":"trade","ts":32503679999000000,"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}}"#
        )
        .unwrap();
        // A recorded day long past keeps its own clock.
        writeln!(f, r#"{{"type":"trade","ts":3,"instrument":"ESZ6","price":"6850","qty":1,"aggressor":"buy"}}"#)
            .unwrap();
        drop(f);

        let catalog = InstrumentCatalog::default_futures();
        let window = TimeWindow::default();
        let mut replay = Replay::open(&path).unwrap();
        let chunk = replay.next_chunk(2, &catalog, &window, 5).unwrap();
        assert_eq!(chunk.events.len(), 1);
        assert_eq!(chunk.events[0].id.to_string(), "replay-day_1.jsonl:1");
        assert_eq!(chunk.rejected.len(), 1);
        assert_eq!(chunk.rejected[0].0, 3);
        assert!(!replay.finished);
        let chunk = replay.next_chunk(100, &catalog, &window, 5).unwrap();
        assert_eq!(chunk.events[0].id.to_string(), "feed:9");
        assert_eq!(chunk.rejected[0].0, 5);
        let fields: Vec<(u64, &str)> = chunk.rejected.iter().map(|(line, e)| (*line, e.field.as_str())).collect();
        assert_eq!(fields, [(5, "json"), (6, "event_id"), (7, "event_id"), (8, "ts")]);
        assert_eq!(chunk.events.last().unwrap().ts, 3);
        assert!(replay.finished);
        assert_eq!((replay.accepted, replay.rejected), (3, 5));
        std::fs::remove_dir_all(dir).ok();
    }
}
