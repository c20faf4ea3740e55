//! The request log: one JSON object a line, on stderr or appended to `--log FILE`, for a
//! site's log collector. Two kinds of line:
//!
//! ```text
//! {"time":"…Z","event":"request","client":"10.0.0.5:51234","user":"admin","method":"GET",
//!  "path":"/v2/app/blobs/sha256:…","status":200,"bytes":1234,"duration_ms":3}
//! {"time":"…Z","event":"login_failed","client":"10.0.0.5:51234","user":"admin","reason":"wrong password"}
//! ```
//! The server's own events are lines too: `{"time","event":"listening","address"}`,
//! `{"time","event":"purged","uploads","temp_files"}`, `{"time","event":"warning","message"}`
//! (a certificate that expires within 30 days: also `"certificate":{"path","serial",
//! "not_after","days_left",…}`, at start and daily), and
//! `{"time","event":"certificate_reloaded","certificate":{…}}` after `install --renew`.
//! With the log on stderr, the human readiness line `listening on https://…` (which scripts
//! wait for) is the only line that is not JSON.
//! `user` is null when the request carried no (valid) credentials; `bytes` is the length of
//! the response body as announced (null when streamed without a length); `duration_ms` is
//! the time until the response started. Passwords and `Authorization` values are never
//! written: the log takes the user name only, and paths carry no credentials.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::json;

use crate::error::{IoContext, Result};

/// Where log lines go.
pub enum Log {
    Stderr,
    File(Mutex<File>),
    /// Nothing (in-process router tests).
    Discard,
}

/// One answered request.
pub struct RequestLine<'a> {
    pub client: Option<SocketAddr>,
    pub user: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub bytes: Option<u64>,
    pub duration: Duration,
}

impl Log {
    /// Append to `path` (created if missing).
    pub fn file(path: &Path) -> Result<Log> {
        let f = OpenOptions::new().create(true).append(true).open(path).at(path)?;
        Ok(Log::File(Mutex::new(f)))
    }

    pub fn request(&self, r: &RequestLine) {
        self.write(json!({
            "time": now(),
            "event": "request",
            "client": r.client.map(|c| c.to_string()),
            "user": r.user,
            "method": r.method,
            "path": r.path,
            "status": r.status,
            "bytes": r.bytes,
            "duration_ms": r.duration.as_millis() as u64,
        }));
    }

    /// `user` is what the client sent, cut to 128 characters.
    pub fn login_failed(&self, client: Option<SocketAddr>, user: &str, reason: &str) {
        let user: String = user.chars().take(128).collect();
        self.write(json!({
            "time": now(),
            "event": "login_failed",
            "client": client.map(|c| c.to_string()),
            "user": user,
            "reason": reason,
        }));
    }

    /// A server event (`listening`, `purged`, `warning`) with its fields.
    pub fn event(&self, event: &str, fields: serde_json::Value) {
        let mut line = json!({ "time": now(), "event": event });
        if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
            line.extend(fields.clone());
        }
        self.write(line);
    }

    fn write(&self, line: serde_json::Value) {
        let mut text = line.to_string();
        text.push('\n');
        match self {
            // One write per line, so lines from many tasks never interleave.
            Log::Stderr => {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
            Log::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(text.as_bytes());
                }
            }
            Log::Discard => {}
        }
    }
}

fn now() -> String {
    crate::time::rfc3339(crate::time::now())
}
