//! Two network namespaces joined by a veth pair, for tests, `belay lab up` and `belay demo`,
//! in which the nftables connector filters real traffic. It only sets up, probes and tears down;
//! it must never touch the host's own ruleset.

use super::{NftablesConfig, Role};
use crate::native::host::{self, Acceptor, ip};
use std::net::IpAddr;
use std::time::Duration;

/// Two network namespaces joined by a veth pair, for tests and the demo: a *client* (the host
/// whose egress is filtered, or the device to quarantine) and a *server* (the network side,
/// with a TCP listener). Everything, including the nft tables inside, is removed on drop.
pub struct Sandbox {
    client_ns: String,
    server_ns: String,
    acceptor: Option<Acceptor>,
}

const CLIENT_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, 1));
const SERVER_V4: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, 2));
const CLIENT_V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xbe1a, 0, 0, 0, 0, 0, 1));
const SERVER_V6: IpAddr = IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xbe1a, 0, 0, 0, 0, 0, 2));
const CLIENT_MAC: &str = "02:be:1a:00:00:01";

impl Sandbox {
    /// Whether `nft` and `ip` are installed and we may create network namespaces.
    pub fn available() -> Result<(), String> {
        if !rustix::process::geteuid().is_root() {
            return Err("needs root for network namespaces and nftables".into());
        }
        for (program, arg) in [("nft", "--version"), ("ip", "-V")] {
            match std::process::Command::new(program).arg(arg).output() {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    return Err(format!(
                        "`{program} {arg}` failed: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
                Err(e) => return Err(format!("{program} not installed ({e})")),
            }
        }
        Ok(())
    }

    /// Creates the namespaces, the link (10.77.0.1 and fd00:be1a::1 on the client,
    /// .2 and ::2 on the server) and the server's listener.
    pub fn start() -> Result<Sandbox, String> {
        Self::available()?;
        let id = format!("{:08x}", fastrand::u32(..));
        let mut sandbox = Sandbox {
            client_ns: format!("belay-{id}-c"),
            server_ns: format!("belay-{id}-s"),
            acceptor: None,
        };
        let (c, s) = (sandbox.client_ns.clone(), sandbox.server_ns.clone());
        let (cv, sv) = (format!("blc{id}"), format!("bls{id}"));
        ip(&["netns", "add", &c])?;
        ip(&["netns", "add", &s])?;
        #[rustfmt::skip]
        ip(&["-n", &c, "link", "add", &cv, "address", CLIENT_MAC, "type", "veth",
             "peer", "name", &sv, "netns", &s])?;
        for (ns, dev, v4, v6) in [
            (&c, &cv, CLIENT_V4, CLIENT_V6),
            (&s, &sv, SERVER_V4, SERVER_V6),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        sandbox.acceptor = Some(Acceptor::start(&s)?);
        // The link takes a moment to come up: ready when both addresses answer.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        for to in [SERVER_V4, SERVER_V6] {
            while !sandbox.can_connect(to, Duration::from_millis(200)) {
                if std::time::Instant::now() > deadline {
                    return Err(format!("{to} unreachable from {c} after 10 s"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(sandbox)
    }

    /// A `firewall` connector's configuration: its table lives in the client namespace
    /// (output and forward hooks).
    pub fn firewall_config(&self) -> NftablesConfig {
        NftablesConfig {
            netns: Some(self.client_ns.clone()),
            ..NftablesConfig::default()
        }
    }

    /// A `nac` connector's configuration: its table lives in the server namespace, the
    /// network the device reaches (input and forward hooks drop the device's traffic).
    pub fn nac_config(&self) -> NftablesConfig {
        NftablesConfig {
            family: Role::Nac,
            netns: Some(self.server_ns.clone()),
            ..NftablesConfig::default()
        }
    }

    /// The client namespace's name (for `ip netns exec`).
    pub fn client_netns(&self) -> &str {
        &self.client_ns
    }

    /// The server namespace's name.
    pub fn server_netns(&self) -> &str {
        &self.server_ns
    }

    /// The client's IPv4 address, 10.77.0.1.
    pub fn client_v4(&self) -> IpAddr {
        CLIENT_V4
    }

    /// The client's IPv6 address, fd00:be1a::1.
    pub fn client_v6(&self) -> IpAddr {
        CLIENT_V6
    }

    /// The client's MAC address (`02:be:1a:00:00:01`).
    pub fn client_mac(&self) -> &str {
        CLIENT_MAC
    }

    /// The server's IPv4 address, 10.77.0.2 (its listener answers there).
    pub fn server_v4(&self) -> IpAddr {
        SERVER_V4
    }

    /// The server's IPv6 address, fd00:be1a::2 (its listener answers there).
    pub fn server_v6(&self) -> IpAddr {
        SERVER_V6
    }

    /// Whether a TCP connection from the client namespace to the server's listener at `to`
    /// succeeds within `timeout`.
    pub fn can_connect(&self, to: IpAddr, timeout: Duration) -> bool {
        let port = self.acceptor.as_ref().map_or(0, Acceptor::port);
        host::can_connect(
            &self.client_ns,
            std::net::SocketAddr::new(to, port),
            timeout,
        )
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.acceptor.take();
        // Deleting a namespace removes its veth end (and so the pair) and its nft tables.
        for ns in [&self.client_ns, &self.server_ns] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
