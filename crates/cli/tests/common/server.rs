//! A running `belay serve` for the end-to-end tests, and plain HTTP/1.1 calls to it (on a new
//! connection each, `connection: close`, so every answer is read to its end).

use super::{command, ok};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `belay serve` in a directory of its own; its standard error is kept (and printed when a
/// test fails with it running); killed when dropped.
pub struct Server {
    child: Child,
    /// The loopback port it listens on.
    pub port: u16,
    /// Its standard error's lines, shared with the thread that reads them.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// `belay serve --listen 127.0.0.1:0` in `dir`, once it says where it listens.
    pub fn start(dir: &Path) -> Server {
        Server::start_with(dir, "127.0.0.1:0", &[])
    }

    /// Like [`Server::start`], listening on `listen`, with `env` added to its environment.
    pub fn start_with(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Server {
        Server::try_start(dir, listen, env)
            .unwrap_or_else(|log| panic!("belay serve did not start:\n{log}"))
    }

    /// Like [`Server::start_with`]; its standard error when it exits instead.
    pub fn try_start(dir: &Path, listen: &str, env: &[(&str, &str)]) -> Result<Server, String> {
        let mut cmd = command(dir);
        cmd.args(["serve", "--listen", listen]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("belay serve starts");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = {
            let log = log.clone();
            // Drains standard error for the server's whole life, so it never blocks on it.
            std::thread::spawn(move || {
                let mut sent = false;
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let listening = !sent && line.contains("belay serve: listening on ");
                    log.lock().unwrap().push(line.clone());
                    if listening {
                        let _ = tx.send(line);
                        sent = true;
                    }
                }
            })
        };
        let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Err(log.lock().unwrap().join("\n"));
        };
        let port = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Ok(Server { child, port, log })
    }

    /// What it wrote to standard error so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sends it signal `sig`.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the child this test started.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// SIGKILL, and waits for the process to end.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to end; its exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.child.wait().expect("the server ends")
    }

    /// One request; the status and the body (JSON when it is JSON).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        request(self.port, method, path, headers, body)
    }

    /// `GET path` with a bearer token.
    pub fn get(&self, path: &str, token: &str) -> (u16, Value) {
        get(self.port, path, token)
    }

    /// `POST path` of a JSON body with a bearer token.
    pub fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        post(self.port, path, token, body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("belay serve's standard error:\n{}", self.log());
        }
    }
}

/// An HTTP answer: the status, the headers (lower-case names) and the body.
pub struct Answer {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Answer {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::String(self.body.clone()))
    }
}

/// One request to the loopback `port` on a new connection; `Err` when the connection fails
/// (the server is down, or went down before answering).
pub fn call(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    exchange(&mut s, method, path, headers, body)
}

/// One request to the loopback `port`, which must answer; the status and the body (JSON when
/// it is JSON).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Value) {
    let a = call(port, method, path, headers, body).expect("the server answers");
    (a.status, a.json())
}

/// `GET path` on the loopback `port` with a bearer token.
pub fn get(port: u16, path: &str, token: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    request(port, "GET", path, &[("authorization", &auth)], b"")
}

/// `POST path` of a JSON body on the loopback `port` with a bearer token.
pub fn post(port: u16, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    request(port, "POST", path, &headers, body.to_string().as_bytes())
}

/// One request on an open connection (plain or TLS), read to its end.
pub fn exchange(
    s: &mut (impl Read + Write),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // A refused body may be answered before it is all read: a write error then is fine.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => {}
        // A TLS peer that closes without close_notify after a complete answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(e),
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return Err(std::io::Error::other(format!(
            "no complete answer: {text:?}"
        )));
    };
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A chunked body (`transfer-encoding: chunked`) put together.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `belay tokens create NAME --roles ROLES` in `dir`: the token, alone on standard output.
pub fn token(dir: &Path, name: &str, roles: &str) -> String {
    let o = command(dir)
        .args(["tokens", "create", name, "--roles", roles])
        .output()
        .unwrap();
    ok(&o);
    let text = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        text.lines().count(),
        1,
        "only the token on stdout: {text:?}"
    );
    text.trim().to_owned()
}

/// The clock in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Polls `f` every 100 ms until it gives a value, for at most two minutes.
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("gave up waiting for {what}");
}
