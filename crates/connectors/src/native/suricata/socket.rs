//! Suricata's unix command socket, spoken directly: one connection carries every command of
//! a batch (a set-level change looks up each value of its batch), where `suricatasc` starts a
//! process per command. Blocking: run it on the blocking pool.

use crate::ActionError;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// One connection to the command socket, past the version handshake.
pub(super) struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    line: String,
    socket: String,
}

impl Session {
    /// Connects and says the protocol version; each reply may take up to `timeout`.
    pub(super) fn connect(path: &Path, timeout: Duration) -> Result<Session, ActionError> {
        let socket = path.display().to_string();
        let fail = |e: std::io::Error| {
            ActionError::transient(format!("cannot use suricata's socket {socket}: {e}"))
        };
        let stream = UnixStream::connect(path).map_err(fail)?;
        stream.set_read_timeout(Some(timeout)).map_err(fail)?;
        stream.set_write_timeout(Some(timeout)).map_err(fail)?;
        let writer = stream.try_clone().map_err(fail)?;
        let mut s = Session {
            reader: BufReader::new(stream),
            writer,
            line: String::new(),
            socket,
        };
        let (ok, msg) = s.send(&json!({ "version": "0.2" }))?;
        if !ok {
            return Err(ActionError::transient(format!(
                "suricata refused the socket protocol version 0.2: {msg}"
            )));
        }
        Ok(s)
    }

    /// Runs one command: whether Suricata answered OK, and its message.
    pub(super) fn command(
        &mut self,
        command: &str,
        arguments: Value,
    ) -> Result<(bool, Value), ActionError> {
        self.send(&json!({ "command": command, "arguments": arguments }))
    }

    /// Sends one JSON message and reads the one-line reply.
    fn send(&mut self, msg: &Value) -> Result<(bool, Value), ActionError> {
        let mut text = msg.to_string();
        text.push('\n');
        let io = |e: std::io::Error| {
            ActionError::transient(format!("suricata's socket {}: {e}", self.socket))
        };
        self.writer.write_all(text.as_bytes()).map_err(io)?;
        self.line.clear();
        let n = self.reader.read_line(&mut self.line).map_err(io)?;
        if n == 0 {
            return Err(ActionError::transient(format!(
                "suricata closed its socket {} without answering",
                self.socket
            )));
        }
        let reply: Value = serde_json::from_str(self.line.trim()).map_err(|e| {
            ActionError::transient(format!(
                "suricata's answer on {} is not JSON ({e}): {}",
                self.socket,
                self.line.chars().take(200).collect::<String>()
            ))
        })?;
        let ok = reply.get("return").and_then(Value::as_str) == Some("OK");
        Ok((ok, reply.get("message").cloned().unwrap_or(Value::Null)))
    }
}
