//! What the integration tests and the benchmarks share to run the `ttpulse` binary: reading the
//! banner `ttpulse run` prints on stdout once it listens (`... is up: open <url>/` and
//! `admin: <url>/`), the contract scripts rely on too.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::Receiver;

/// The two URLs `ttpulse run` prints (without a trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Banner {
    /// The public listener: the API, `/ws`.
    pub url: String,
    /// The admin listener: `/admin/*`, `/metrics`.
    pub admin: String,
}

/// The word after `marker` in `line`, without a trailing `/`.
fn after(line: &str, marker: &str) -> Option<String> {
    line.split(marker).nth(1).and_then(|u| u.split_whitespace().next()).map(|u| u.trim_end_matches('/').to_owned())
}

/// Reads the banner from a `ttpulse run`'s stdout on a thread of its own, which then keeps
/// reading (so the process never blocks on a full pipe). The receiver gets the banner once.
pub fn read_banner(stdout: impl Read + Send + 'static) -> Receiver<Banner> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
        let url = lines.find_map(|l| after(&l, "open "));
        let admin = lines.find_map(|l| after(&l, "admin: "));
        if let (Some(url), Some(admin)) = (url, admin) {
            let _ = tx.send(Banner { url, admin });
        }
        for _ in lines {}
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_urls_and_keeps_draining() {
        let text =
            "\n  ttpulse (api) is up: open http://127.0.0.1:8080/\n  admin: http://127.0.0.1:9464/  (health)\n\nmore\n";
        let banner = read_banner(std::io::Cursor::new(text.as_bytes().to_vec())).recv().expect("banner");
        assert_eq!(banner, Banner { url: "http://127.0.0.1:8080".into(), admin: "http://127.0.0.1:9464".into() });
    }
}
