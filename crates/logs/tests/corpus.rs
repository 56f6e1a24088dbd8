//! The normalizers against real logs written by others (`BELAY_CORPUS`, default
//! `../shared/corpus` beside the workspace). Expected values were read by hand from the files.

use belay_logs::normalize::{Context, Normalizer, split_records};
use belay_model::{Event, Severity};
use belay_testkit::corpus;
use std::path::PathBuf;

/// Every record of every file under `sub` (sorted), as (file name, line, text, normalized).
struct Record {
    file: String,
    line: usize,
    text: String,
    event: Option<Event>,
    parse_error: Option<String>,
}

/// The records of a corpus folder; `None` when the corpus is missing (the test is skipped).
fn load(sub: &str) -> Option<Vec<Record>> {
    let dir = corpus()?.join(sub);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x != "md"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no files in {}", dir.display());
    let n = Normalizer::builtin();
    let mut out = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for (line, rec) in split_records(&bytes) {
            let ctx = Context::new(format!("file:{}", f.display()));
            let got = n.line(&rec, &ctx);
            out.push(Record {
                file: f.file_name().unwrap().to_string_lossy().into_owned(),
                line,
                text: String::from_utf8_lossy(&rec).into_owned(),
                parse_error: got.as_ref().and_then(|g| g.parse_error.clone()),
                event: got.map(|g| g.event),
            });
        }
    }
    Some(out)
}

fn find<'a>(records: &'a [Record], needle: &str) -> &'a Event {
    let r = records
        .iter()
        .find(|r| r.text.contains(needle))
        .unwrap_or_else(|| panic!("no record contains {needle:?}"));
    r.event.as_ref().expect("an event")
}

#[test]
fn every_linux_account_and_group_change_becomes_a_privilege_change() {
    let Some(records) = load("logs/linux") else {
        return;
    };
    let shadow =
        regex::Regex::new(r" (useradd|groupadd|gpasswd|usermod|adduser|userdel|groupdel)\[\d+\]: ")
            .unwrap();
    let mut changes = 0;
    for r in &records {
        let e = r
            .event
            .as_ref()
            .unwrap_or_else(|| panic!("{}:{} produced nothing", r.file, r.line));
        if shadow.is_match(&r.text) {
            changes += 1;
            assert_eq!(
                e.kind, "auth.privilege_change",
                "{}:{}: {}",
                r.file, r.line, r.text
            );
            let d = &e.data;
            assert!(
                d["user"].is_string() || d["group"].is_string(),
                "{}:{}: neither user nor group in {d}",
                r.file,
                r.line
            );
            assert!(d["raw"].as_str().unwrap().contains(r.text.trim()));
        } else {
            assert_ne!(
                e.kind, "auth.privilege_change",
                "{}:{}: {}",
                r.file, r.line, r.text
            );
        }
    }
    // 30 in the wazuh 1301-1303 file, 6 in the decoder comments, 2 in the filebeat sample.
    assert_eq!(changes, 38);

    let e = find(
        &records,
        "gpasswd[3246]: user bart added by root to group sudo",
    );
    assert_eq!(e.data["action"], "added");
    assert_eq!(e.data["user"], "bart");
    assert_eq!(e.data["group"], "sudo");
    assert_eq!(e.data["actor"], "root");
    assert_eq!(e.data["host"], "ip-10-0-0-220");
    assert_eq!(e.severity, Severity::High, "sudo is a privileged group");
    assert_eq!(e.observables.users, ["bart"]);
    assert_eq!(e.observables.hosts, ["ip-10-0-0-220"]);

    let e = find(
        &records,
        "useradd[2672]: new user: name=marge, UID=1006, GID=1004",
    );
    assert_eq!(e.data["action"], "user_created");
    assert_eq!(e.data["user"], "marge");
    assert_eq!(e.data["uid"], "1006");
    assert_eq!(e.data["gid"], "1004");

    let e = find(
        &records,
        "groupadd[26459]: new group: name=osaudit, gid=12002",
    );
    assert_eq!(e.data["action"], "group_created");
    assert_eq!(e.data["group"], "osaudit");
    assert_eq!(e.data["host"], "niban");

    let e = find(
        &records,
        "adduser[16164]: new user: name=port2, uid=12004, gid=0",
    );
    assert_eq!(e.data["user"], "port2");
    assert_eq!(e.data["privileged"], true, "primary group 0 is root's");

    let e = find(&records, "userdel[32416]: delete user `logr'");
    assert_eq!(
        (e.data["action"].as_str(), e.data["user"].as_str()),
        (Some("user_deleted"), Some("logr"))
    );
    let e = find(&records, "groupdel[25984]: group deleted: name=_dbus");
    assert_eq!(
        (e.data["action"].as_str(), e.data["group"].as_str()),
        (Some("group_deleted"), Some("_dbus"))
    );
    let e = find(&records, "arrakis userdel[23023]: user removed: name=dac");
    assert_eq!(e.data["user"], "dac");
    assert_eq!(e.time.to_rfc3339(), "2014-02-21T15:22:55.134355+00:00");
}

#[test]
fn windows_group_membership_events_become_privilege_changes() {
    let Some(records) = load("logs/windows") else {
        return;
    };
    assert_eq!(records.len(), 59);
    let mut added = 0;
    let mut removed = 0;
    for r in &records {
        let e = r.event.as_ref().unwrap();
        let id = e.data["event_id"].as_str().unwrap_or_default().to_owned();
        match id.as_str() {
            "4728" | "4732" | "4756" | "4729" | "4733" | "4757" => {
                assert_eq!(e.kind, "auth.privilege_change", "{}:{}", r.file, r.line);
                assert!(
                    e.data["user"].is_string() && e.data["group"].is_string(),
                    "{}",
                    e.data
                );
                assert!(!e.observables.users.is_empty() && !e.observables.hosts.is_empty());
                if ["4728", "4732", "4756"].contains(&id.as_str()) {
                    assert_eq!(e.data["action"], "added");
                    added += 1;
                } else {
                    assert_eq!(e.data["action"], "removed");
                    removed += 1;
                }
            }
            _ => assert_eq!(e.kind, "windows.event", "{}:{}", r.file, r.line),
        }
    }
    assert_eq!((added, removed), (15 + 12 + 21, 4));

    // The first record: honey-pot1 put into Domain Admins by lambda-user on the DC.
    let e = records[records
        .iter()
        .position(|r| r.file.starts_with("evtx-to-mitre"))
        .unwrap()]
    .event
    .as_ref()
    .unwrap();
    assert_eq!(e.data["event_id"], "4728");
    assert_eq!(e.data["user"], "honey-pot1");
    assert_eq!(e.data["group"], "Domain Admins");
    assert_eq!(e.data["group_domain"], "OFFSEC");
    assert_eq!(e.data["actor"], "lambda-user");
    assert_eq!(e.data["host"], "rootdc1.offsec.lan");
    assert_eq!(e.severity, Severity::High);
    assert_eq!(
        e.id, "win:rootdc1.offsec.lan:16088263",
        "re-imports are recognized"
    );
    assert_eq!(e.time.to_rfc3339(), "2020-07-12T06:01:13.758734+00:00");

    // A local account has a SID and no name: the SID is the user.
    let e = find(&records, "S-1-5-21-3461203602-4096304019-2269080069-501");
    assert_eq!(
        e.data["user"],
        "S-1-5-21-3461203602-4096304019-2269080069-501"
    );
    assert_eq!(e.data["group"], "Administrators");
    assert_eq!(e.data["actor"], "IEUser");
    assert_eq!(e.data["host"], "MSEDGEWIN10");

    // An Exchange group (4756, universal) and a non-privileged one.
    let e = find(
        &records,
        "\"TargetUserName\": \"Exchange Windows Permissions\"",
    );
    assert_eq!(
        (e.data["user"].as_str(), e.severity),
        (Some("admin-hacker"), Severity::High)
    );
    let e = find(&records, "\"TargetUserName\": \"Group05\"");
    assert_eq!(
        (e.data["user"].as_str(), e.severity),
        (Some("hack-adm-hack"), Severity::Medium)
    );
}

#[test]
fn dhcp_and_arpwatch_lines_with_a_mac_become_new_devices() {
    let Some(records) = load("logs/network") else {
        return;
    };
    let mac = regex::Regex::new(r"\b[0-9a-f]{1,2}(:[0-9a-f]{1,2}){5}\b").unwrap();
    let mut macs = Vec::new();
    for r in &records {
        let e = r.event.as_ref().unwrap();
        if mac.is_match(&r.text) {
            assert_eq!(
                e.kind, "network.new_device",
                "{}:{}: {}",
                r.file, r.line, r.text
            );
            assert_eq!(e.observables.macs.len(), 1);
            macs.push(e.observables.macs[0].clone());
        } else {
            assert_eq!(e.kind, "syslog.message", "{}:{}", r.file, r.line);
        }
    }
    assert_eq!(macs.len(), 9);
    macs.sort();
    macs.dedup();
    assert_eq!(
        macs,
        [
            "00:02:b3:d6:e5:68",
            "00:0e:3b:0a:cb:67",
            "00:11:43:5e:5d:80",
            "00:c0:4f:78:32:be",
            "b4:b5:2f:15:4c:ec",
            "f4:8c:50:9d:eb:35"
        ]
    );
    let e = find(
        &records,
        "DHCPACK on 192.168.17.154 to b4:b5:2f:15:4c:ec via sk0",
    );
    assert_eq!(e.data["ip"], "192.168.17.154");
    assert_eq!(e.data["mac"], "b4:b5:2f:15:4c:ec");
    assert_eq!(e.data["vendor"], "Hewlett Packard");
    assert_eq!(e.data["interface"], "sk0");
    assert_eq!(e.data["observer"], "junction");
    assert_eq!(e.observables.ips, ["192.168.17.154"]);
    let e = find(&records, "new station 192.168.1.103");
    assert_eq!(e.data["mac"], "00:11:43:5e:5d:80");
    assert_eq!(e.data["vendor"], "Dell Inc.");
    assert_eq!(e.data["observation"], "arpwatch_new_station");
    let e = find(&records, "reused old ethernet address");
    assert_eq!(e.data["previous_mac"], "00:1e:8c:72:b0:d0");
    assert_eq!(e.severity, Severity::Medium);
    let e = find(&records, "DHCPDISCOVER from f4:8c:50:9d:eb:35 via em1");
    assert_eq!(e.data["vendor"], "Intel Corporate");
    assert!(e.data["ip"].is_null());
}

#[test]
fn symantec_dlp_incidents_become_dlp_alerts() {
    let Some(records) = load("dlp") else {
        return;
    };
    assert_eq!(records.len(), 4);
    for r in &records {
        let e = r.event.as_ref().unwrap();
        assert_eq!(e.kind, "dlp.alert");
        assert_eq!(e.data["user"], "ABC\\sampleuser01");
        assert_eq!(e.data["channel"], "Endpoint HTTPS");
        assert_eq!(
            e.data["encrypted"], false,
            "the DLP read matches in the file"
        );
        assert_eq!(e.data["channel_encrypted"], true, "Endpoint HTTPS");
        assert_eq!(e.observables.hosts, ["L1020088"]);
        assert_eq!(e.observables.ips, ["10.221.237.2"]);
        assert_eq!(
            e.data["data_types"].as_array().map(Vec::len),
            Some(1),
            "{}",
            e.data["policy"]
        );
    }
    let e = records[0].event.as_ref().unwrap();
    assert_eq!(
        e.data["policy"],
        "National Insurance Numbers - Web Monitoring"
    );
    assert_eq!(e.data["data_types"][0], "national_insurance_number");
    assert_eq!(e.data["file"], "DLP_Excel_NINO count 1.xlsx");
    assert_eq!(e.data["match_count"], 4);
    assert_eq!(e.data["incident_id"], "1812");
    assert_eq!(e.severity, Severity::Low, "SEVERITY=4:Info");
    assert_eq!(e.time.to_rfc3339(), "2020-11-20T15:52:00+00:00");
    let kinds: Vec<&str> = records
        .iter()
        .map(|r| {
            r.event.as_ref().unwrap().data["data_types"][0]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "national_insurance_number",
            "date_of_birth",
            "payment_card_number",
            "bank_account_number"
        ]
    );
    let e = records[2].event.as_ref().unwrap();
    assert_eq!(
        (
            e.data["incident_id"].as_str(),
            e.data["match_count"].as_u64()
        ),
        (Some("1823"), Some(3))
    );
}

#[test]
fn suricata_eve_alerts_become_ids_alerts() {
    let Some(records) = load("ids/suricata") else {
        return;
    };
    assert_eq!(records.len(), 13);
    for r in &records {
        let e = r.event.as_ref().unwrap();
        assert_eq!(e.kind, "ids.alert", "{}:{}", r.file, r.line);
        assert!(e.data["signature"].is_string() && e.data["sid"].is_u64());
        for k in ["src_ip", "dest_ip"] {
            let ip = e.data[k].as_str().unwrap().to_owned();
            assert!(e.observables.ips.contains(&ip), "{}", r.text);
        }
    }
    let e = records[0].event.as_ref().unwrap();
    assert_eq!(
        e.data["signature"],
        "GPL ATTACK_RESPONSE id check returned root"
    );
    assert_eq!(e.data["sid"], 2100498);
    assert_eq!(e.data["category"], "Potentially Bad Traffic");
    assert_eq!(e.data["src_ip"], "82.165.177.154");
    assert_eq!(e.data["src_port"], 80);
    assert_eq!(e.data["dest_port"], 54186);
    assert_eq!(e.data["proto"], "TCP");
    assert_eq!(e.severity, Severity::Medium, "Suricata severity 2");
    assert_eq!(e.observables.ips, ["82.165.177.154", "10.16.1.11"]);
    assert_eq!(e.observables.domains, ["www.testmyids.com"]);
    assert_eq!(e.time.to_rfc3339(), "2016-07-13T22:42:07.573103+00:00");
}

#[test]
fn every_rsyslog_test_line_yields_an_event_or_a_counted_parse_error() {
    let Some(records) = load("logs/syslog") else {
        return;
    };
    assert_eq!(records.len(), 44);
    let mut events = 0;
    let mut parse_errors = 0;
    for r in &records {
        let e = r
            .event
            .as_ref()
            .unwrap_or_else(|| panic!("line {} dropped", r.line));
        events += 1;
        if r.parse_error.is_some() {
            parse_errors += 1;
            assert!(e.data["parse_error"].is_string());
        }
        assert_eq!(e.data["raw"].as_str().map(str::trim), Some(r.text.trim()));
    }
    assert_eq!(events, 44);
    // `<14>2010-08-30T23:00:05Z` with nothing after it, twice.
    assert_eq!(parse_errors, 2);

    let e = find(&records, "<34>Oct 11 22:14:15 mymachine su:");
    assert_eq!(e.kind, "syslog.message");
    assert_eq!(e.data["facility"], "auth");
    assert_eq!(e.data["syslog_severity"], "crit");
    assert_eq!(e.severity, Severity::Critical);
    assert_eq!(e.data["hostname"], "mymachine");
    let e = find(&records, "[examplePriority@32473 class=\"high\"]");
    assert_eq!(e.data["protocol"], "rfc5424");
    assert_eq!(
        e.data["structured_data"]["examplePriority@32473"]["class"],
        "high"
    );
    let e = find(&records, "8-bit European chars");
    assert!(e.data["message"].as_str().unwrap().ends_with("äöü"));
    // Snare: Windows events over syslog, tabs written as `\011`.
    let snare: Vec<&Event> = records
        .iter()
        .filter(|r| r.text.contains("MSWinEventLog"))
        .map(|r| r.event.as_ref().unwrap())
        .collect();
    assert_eq!(snare.len(), 17);
    for e in &snare {
        assert_eq!(e.kind, "windows.event", "{}", e.data);
    }
    let e = find(&records, "\\011573\\011");
    assert_eq!(e.data["event_id"], "680");
    assert_eq!(e.data["snare"]["user"], "ettore.trezzani");
    assert_eq!(e.observables.hosts, ["ZUSE"]);
}

#[test]
fn cef_lines_keep_header_fields_and_spaced_extension_values() {
    let Some(records) = load("logs/cef") else {
        return;
    };
    assert_eq!(records.len(), 9);
    for r in &records {
        let e = r.event.as_ref().unwrap();
        assert_eq!(e.kind, "cef.event", "{}:{}", r.file, r.line);
        assert!(r.parse_error.is_none());
    }
    let e = find(&records, "request=/pma/index.php");
    assert_eq!(e.data["cef"]["vendor"], "BarracudaNetworks");
    assert_eq!(e.data["cef"]["product"], "WAAS");
    assert_eq!(e.data["extensions"]["src"], "101.173.234.143");
    assert_eq!(e.data["extensions"]["msg"], "lang=en");
    assert_eq!(
        e.data["extensions"]["requestClientApplication"],
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.51 Safari/537.36"
    );
    assert_eq!(e.data["extensions"]["BarracudaWafSessionID"], "");
    assert_eq!(e.severity, Severity::Medium);
    assert_eq!(e.time.timestamp_millis(), 1659523775038, "from `rt`");
    assert!(e.observables.ips.contains(&"101.173.234.143".to_owned()));
    assert!(
        e.observables.ips.contains(&"13.86.36.66".to_owned())
            || e.observables.hosts.contains(&"13.86.36.66".to_owned())
    );

    let e = find(&records, "URL Access Violation|Substantial");
    assert_eq!(e.data["cef"]["vendor"], "");
    assert_eq!(e.data["cef"]["product"], "");
    assert_eq!(e.data["cef"]["name"], "URL Access Violation");
    assert_eq!(e.data["extensions"]["cs1"], "My App 1");
    assert_eq!(
        e.data["extensions"]["cs6"],
        "A01:2021-Broken Access Control"
    );
    assert_eq!(e.severity, Severity::High);
    assert_eq!(e.observables.ips, ["49.206.123.11"]);
}
