//! Running a component's command-line tool: bounded time, captured output, errors that say what ran.

use crate::ActionError;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The outcome of a command that ran to completion.
#[derive(Debug)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A command to run, optionally inside a network namespace (`ip netns exec NS`).
#[derive(Debug, Clone)]
pub struct Cmd {
    program: String,
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    timeout: Duration,
}

impl Cmd {
    pub fn new(program: impl Into<String>) -> Cmd {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Wraps the command in `ip netns exec NS` when a namespace is given.
    pub fn in_netns(program: &str, netns: Option<&str>) -> Cmd {
        match netns {
            Some(ns) => Cmd::new("ip").args(["netns", "exec", ns, program]),
            None => Cmd::new(program),
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Cmd {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Cmd {
        self.timeout = timeout;
        self
    }

    /// The command line as shown in errors.
    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command; a command that cannot start or runs past its timeout is an error
    /// (transient for a timeout). A non-zero exit status is returned, not an error.
    pub async fn output(&self) -> Result<Output, ActionError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| ActionError::permanent(format!("cannot run `{}`: {e}", self.program)))?;
        if let (Some(input), Some(mut pipe)) = (self.stdin.as_deref(), child.stdin.take()) {
            pipe.write_all(input).await.map_err(|e| {
                ActionError::transient(format!("cannot write to `{}`: {e}", self.display()))
            })?;
            drop(pipe);
        }
        let out = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                ActionError::transient(format!(
                    "`{}` did not finish within {:?}",
                    self.display(),
                    self.timeout
                ))
            })?
            .map_err(|e| ActionError::transient(format!("`{}` failed: {e}", self.display())))?;
        Ok(Output {
            status: out.status.code().unwrap_or(-1),
            // In place: a listing can be tens of megabytes.
            stdout: String::from_utf8(out.stdout)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs the command and requires success; the error carries the command and its stderr.
    pub async fn run(&self) -> Result<Output, ActionError> {
        let out = self.output().await?;
        if out.success() {
            Ok(out)
        } else {
            Err(ActionError::permanent(format!(
                "`{}` exited with status {}: {}",
                self.display(),
                out.status,
                first_lines(&out.stderr, &out.stdout)
            )))
        }
    }
}

/// The start of a tool's complaint, for an error message.
fn first_lines(stderr: &str, stdout: &str) -> String {
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let mut s: String = text.lines().take(8).collect::<Vec<_>>().join(" | ");
    if s.len() > 1000 {
        s.truncate(s.floor_char_boundary(1000));
    }
    s
}
