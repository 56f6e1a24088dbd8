//! The seeded fleet shared by the EDR, CMDB and packet-capture simulators: a small company
//! with a CFO laptop marked high-profile, two compromised engineering workstations sharing an
//! indicator, servers, network gear without an EDR agent, and enough ordinary laptops to need
//! more than one page.

use serde::Serialize;

/// A device's owner.
#[derive(Debug, Clone, Serialize)]
pub struct Owner {
    pub username: String,
    pub name: String,
    pub email: String,
    pub department: String,
    pub title: String,
}

/// One device, as the CMDB knows it, with what the EDR knows of it.
#[derive(Debug, Clone)]
pub struct Device {
    pub device_id: String,
    pub hostname: String,
    pub ip: String,
    pub mac: String,
    pub class: String,
    pub os: String,
    pub owner: Owner,
    pub criticality: String,
    pub high_profile: bool,
    /// Whether an EDR agent runs on it.
    pub edr_agent: bool,
    pub online: bool,
    /// The level the EDR policy gives it.
    pub policy_level: String,
    pub verdict: String,
    /// Indicators the EDR has observed on it, with how many hours ago it first saw them.
    pub observed: Vec<(String, u64)>,
}

/// The SHA-256 of the seeded malware sample (seen on two engineering workstations).
pub const MALWARE_SHA256: &str = "5f2b7c1d9e0a4b3c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c";
/// The seeded command-and-control domain.
pub const C2_DOMAIN: &str = "update-check.badcdn.example";

#[allow(clippy::too_many_arguments)]
fn device(
    n: u32,
    hostname: &str,
    ip: &str,
    class: &str,
    os: &str,
    owner: (&str, &str, &str, &str),
    criticality: &str,
    high_profile: bool,
) -> Device {
    let (username, name, department, title) = owner;
    Device {
        device_id: format!("dev-{n:04}"),
        hostname: hostname.into(),
        ip: ip.into(),
        mac: format!(
            "3c:22:fb:{:02x}:{:02x}:{:02x}",
            n >> 16,
            (n >> 8) & 0xff,
            n & 0xff
        ),
        class: class.into(),
        os: os.into(),
        owner: Owner {
            username: username.into(),
            name: name.into(),
            email: format!("{username}@corp.example"),
            department: department.into(),
            title: title.into(),
        },
        criticality: criticality.into(),
        high_profile,
        edr_agent: !matches!(class, "access_point" | "printer" | "switch"),
        online: true,
        policy_level: if criticality == "high" {
            "normal"
        } else {
            "low"
        }
        .into(),
        verdict: "clean".into(),
        observed: Vec::new(),
    }
}

/// The seeded fleet (30 devices).
pub fn seed() -> Vec<Device> {
    let mut fleet = vec![
        device(
            1,
            "fin-cfo-lt01",
            "10.20.1.15",
            "laptop",
            "Windows 11",
            (
                "mdubois",
                "Marie Dubois",
                "Finance",
                "Chief Financial Officer",
            ),
            "high",
            true,
        ),
        device(
            2,
            "fin-ws-014",
            "10.20.1.37",
            "laptop",
            "Windows 11",
            ("jsmith", "John Smith", "Finance", "Accountant"),
            "medium",
            false,
        ),
        device(
            3,
            "eng-ws-101",
            "10.30.2.11",
            "workstation",
            "Ubuntu 24.04",
            ("akhan", "Aisha Khan", "Engineering", "Software Engineer"),
            "medium",
            false,
        ),
        device(
            4,
            "eng-ws-102",
            "10.30.2.12",
            "workstation",
            "Ubuntu 24.04",
            ("pnovak", "Petr Novak", "Engineering", "Software Engineer"),
            "medium",
            false,
        ),
        device(
            5,
            "srv-db-01",
            "10.10.0.5",
            "server",
            "Debian 12",
            ("itops", "IT Operations", "IT", "Service account"),
            "high",
            false,
        ),
        device(
            6,
            "srv-web-01",
            "10.10.0.8",
            "server",
            "Debian 12",
            ("itops", "IT Operations", "IT", "Service account"),
            "high",
            false,
        ),
        device(
            7,
            "hr-lt-007",
            "10.20.3.9",
            "laptop",
            "macOS 15",
            ("lgarcia", "Lucia Garcia", "Human Resources", "HR Partner"),
            "medium",
            false,
        ),
        device(
            8,
            "ap-floor2",
            "10.40.0.2",
            "access_point",
            "AP firmware 8.10",
            ("netops", "Network Operations", "IT", "Service account"),
            "medium",
            false,
        ),
        device(
            9,
            "prn-floor2",
            "10.40.0.20",
            "printer",
            "Printer firmware",
            ("netops", "Network Operations", "IT", "Service account"),
            "low",
            false,
        ),
        device(
            10,
            "exec-ceo-lt01",
            "10.20.0.10",
            "laptop",
            "macOS 15",
            (
                "rchen",
                "Robert Chen",
                "Executive",
                "Chief Executive Officer",
            ),
            "high",
            true,
        ),
    ];
    let departments = ["Sales", "Marketing", "Support", "Engineering"];
    for i in 0..20u32 {
        let n = 11 + i;
        let dept = departments[(i as usize) % departments.len()];
        let user = format!("user{n:02}");
        let mut d = device(
            n,
            &format!("{}-lt-{:03}", dept[..3].to_ascii_lowercase(), n),
            &format!("10.50.{}.{}", i / 10, 20 + i),
            "laptop",
            "Windows 11",
            (&user, &format!("Employee {n}"), dept, "Staff"),
            "low",
            false,
        );
        if i % 7 == 6 {
            d.online = false;
        }
        fleet.push(d);
    }
    fleet[2].verdict = "compromised".into();
    fleet[2].observed = vec![
        (MALWARE_SHA256.into(), 30),
        (C2_DOMAIN.into(), 29),
        ("198.51.100.23".into(), 29),
    ];
    fleet[3].verdict = "suspicious".into();
    fleet[3].observed = vec![(MALWARE_SHA256.into(), 6)];
    // An old sighting, outside a 7-day search window.
    fleet[14].observed = vec![(C2_DOMAIN.into(), 24 * 40)];
    fleet
}
