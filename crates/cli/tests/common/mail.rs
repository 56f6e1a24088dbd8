//! Real mail servers for the end-to-end tests, each started by the test on loopback with its
//! configuration in a temporary directory: Dovecot (IMAP, alice's maildir) and Postfix (SMTP,
//! delivering into that maildir).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Dovecot running as a child process; stopped (SIGTERM, then waited for) on drop.
pub struct Dovecot {
    pub child: Child,
    /// The IMAP port.
    pub port: u16,
    /// alice's maildir.
    pub maildir: PathBuf,
    pub log: PathBuf,
    /// Who owns the mail (as root: `nobody`).
    pub mail_owner: Option<(u32, u32)>,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Dovecot's binary; `None` (the test is skipped, saying why) when it is not installed.
pub fn dovecot_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .into_iter()
        .find(|p| belay_testkit::skip::installed(Path::new(p)));
    if found.is_none() {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            "dovecot is not installed: `apt-get install -y --no-install-recommends dovecot-imapd` (.ci/run installs it)",
        );
    }
    found.map(PathBuf::from)
}

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn current_user() -> (String, String, u32, u32) {
    // SAFETY: plain libc getters; the returned structs are copied out at once.
    unsafe {
        let uid = libc::geteuid();
        let gid = libc::getegid();
        let pw = libc::getpwuid(uid);
        let gr = libc::getgrgid(gid);
        assert!(
            !pw.is_null() && !gr.is_null(),
            "the current user has no name"
        );
        let user = std::ffi::CStr::from_ptr((*pw).pw_name)
            .to_string_lossy()
            .into_owned();
        let group = std::ffi::CStr::from_ptr((*gr).gr_name)
            .to_string_lossy()
            .into_owned();
        (user, group, uid, gid)
    }
}

/// Starts a Dovecot keeping its configuration and mail in `dir` (created if needed).
pub fn start_dovecot(dir: &Path) -> Dovecot {
    std::fs::create_dir_all(dir).unwrap();
    let bin = dovecot_binary().expect("checked by the caller");
    let port = free_port();
    let (user, group, uid, gid) = current_user();
    // Dovecot refuses to run its login processes, or to access mail, as root: as root, use
    // `nobody` for both (and let it into the temporary directory); otherwise ourselves.
    let (login_user, internal_user, internal_group, mail_uid, mail_gid) = if uid == 0 {
        let (nuid, ngid) = unsafe {
            let pw = libc::getpwnam(c"nobody".as_ptr());
            assert!(!pw.is_null(), "running as root needs a `nobody` user");
            ((*pw).pw_uid, (*pw).pw_gid)
        };
        let ngroup = unsafe {
            let gr = libc::getgrgid(ngid);
            assert!(!gr.is_null());
            std::ffi::CStr::from_ptr((*gr).gr_name)
                .to_string_lossy()
                .into_owned()
        };
        ("nobody".to_owned(), "nobody".to_owned(), ngroup, nuid, ngid)
    } else {
        (user.clone(), user, group, uid, gid)
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for sub in ["run", "state", "mail", "home"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "alice:{PLAIN}s3cret-pw\n").unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let maildir = dir.join("mail/alice");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mail_owner = (uid == 0).then_some((mail_uid, mail_gid));
    chown_tree(&dir.join("mail"), mail_owner);
    let d = dir.display();
    let log = dir.join("dovecot.log");
    let conf = format!(
        r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
listen = 127.0.0.1
protocols = imap
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_uid = {mail_uid}
mail_gid = {mail_gid}
mail_location = maildir:{d}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = home={d}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
"#
    );
    let conf_path = dir.join("dovecot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .arg("-F")
        .arg("-c")
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dovecot starts");
    let dovecot = Dovecot {
        child,
        port,
        maildir,
        log,
        mail_owner,
    };
    wait_for_greeting("dovecot", port, b"* OK", &dovecot.log);
    dovecot
}

pub fn chown_tree(path: &Path, owner: Option<(u32, u32)>) {
    let Some((uid, gid)) = owner else { return };
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_tree(&e.unwrap().path(), owner);
        }
    }
}

/// A Postfix instance of its own (`postfix -c DIR`), its SMTP server on a loopback port,
/// delivering the addresses it is given into maildirs under a base directory (its `virtual`
/// agent: the Dovecot above serves them); stopped on drop.
pub struct Postfix {
    /// The configuration directory.
    pub conf: PathBuf,
    /// The SMTP port on 127.0.0.1.
    pub port: u16,
    /// Postfix's own log.
    pub log: PathBuf,
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new(postfix_binary().unwrap_or_else(|| PathBuf::from("postfix")))
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Postfix's command; `None` (the test is skipped, saying why) when it is not installed or this
/// process cannot run it (it must start as root to drop to its own users).
pub fn postfix_binary() -> Option<PathBuf> {
    let found = ["/usr/sbin/postfix"]
        .into_iter()
        .find(|p| belay_testkit::skip::installed(Path::new(p)))
        .map(PathBuf::from);
    // SAFETY: a plain getter.
    let root = unsafe { libc::geteuid() } == 0;
    if found.is_none() || !root {
        belay_testkit::skip::unless_required(
            "BELAY_REQUIRE_NATIVE",
            if found.is_none() {
                "postfix is not installed: `apt-get install -y --no-install-recommends postfix` (.ci/run installs it)"
            } else {
                "postfix must be started as root (it drops to its own `postfix` user)"
            },
        );
        return None;
    }
    found
}

/// Starts Postfix with its configuration, queue and log in `dir`, delivering each
/// `(address, maildir)` of `mailboxes` into `base/maildir/` as `owner` (uid, gid).
pub fn start_postfix(
    dir: &Path,
    base: &Path,
    mailboxes: &[(&str, &str)],
    owner: (u32, u32),
) -> Postfix {
    let bin = postfix_binary().expect("checked by the caller");
    let conf = dir.join("conf");
    for sub in ["conf", "queue", "data"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (uid, gid) = unsafe {
        let pw = libc::getpwnam(c"postfix".as_ptr());
        assert!(!pw.is_null(), "the postfix package made a `postfix` user");
        ((*pw).pw_uid, (*pw).pw_gid)
    };
    std::os::unix::fs::chown(dir.join("data"), Some(uid), Some(gid)).unwrap();
    let port = free_port();
    let d = dir.display();
    let domains: std::collections::BTreeSet<&str> = mailboxes
        .iter()
        .filter_map(|(a, _)| a.split_once('@').map(|(_, d)| d))
        .collect();
    let main = format!(
        "compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = belay-test.localdomain
mydestination =
mynetworks = 127.0.0.0/8
relayhost =
maillog_file = {d}/postfix.log
maillog_file_prefixes = {d}
virtual_mailbox_domains = {domains}
virtual_mailbox_base = {base}
virtual_mailbox_maps = texthash:{d}/conf/vmailbox
virtual_uid_maps = static:{ouid}
virtual_gid_maps = static:{ogid}
virtual_minimum_uid = 1
smtputf8_enable = no
biff = no
",
        domains = domains.into_iter().collect::<Vec<_>>().join(" "),
        base = base.display(),
        ouid = owner.0,
        ogid = owner.1,
    );
    std::fs::write(conf.join("main.cf"), main).unwrap();
    let vmailbox: String = mailboxes
        .iter()
        .map(|(a, m)| format!("{a} {m}/\n"))
        .collect();
    std::fs::write(conf.join("vmailbox"), vmailbox).unwrap();
    let services = [
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "virtual unix - n n - - virtual",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ];
    let master = format!(
        "127.0.0.1:{port} inet n - n - - smtpd\n{}\n",
        services.join("\n")
    );
    std::fs::write(conf.join("master.cf"), master).unwrap();
    let log = dir.join("postfix.log");
    let out = Command::new(&bin)
        .arg("-c")
        .arg(&conf)
        .arg("start")
        .stdin(Stdio::null())
        .output()
        .expect("postfix runs");
    let postfix = Postfix { conf, port, log };
    assert!(
        out.status.success(),
        "postfix did not start: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&postfix.log).unwrap_or_default()
    );
    wait_for_greeting("postfix", port, b"220", &postfix.log);
    postfix
}

/// Waits up to 30 s until the server on the loopback `port` greets with `greeting`; fails
/// with its log otherwise.
fn wait_for_greeting(name: &str, port: u16, greeting: &[u8], log: &Path) {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = [0u8; 64];
            if (&s)
                .read(&mut buf)
                .is_ok_and(|n| buf[..n].starts_with(greeting))
            {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not start; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
