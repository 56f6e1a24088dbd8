//! Servers a test starts on loopback: a free port, waiting until it listens, and stopping it
//! when the test ends.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A server process, killed and reaped when the test ends, however it ends.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Server {
    /// Starts `cmd` with its output discarded and waits until 127.0.0.1:`port` accepts
    /// connections; panics when it does not start, or does not listen within `within`.
    pub fn start(cmd: &mut Command, port: u16, within: Duration) -> Server {
        let what = cmd.get_program().to_owned();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what:?} does not start (is it installed?): {e}"));
        let server = Server(child);
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < within,
                "{what:?} is not listening on port {port} after {within:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }
}
