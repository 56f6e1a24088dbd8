//! Never-lists see through notations: every way of writing a protected address, network,
//! domain, host or user that a downstream system reads as the same thing is held, through
//! every catalog action whose target can be one, at `log` and at `guarded`.

use belay_engine::guard::{Context, Guardrails};
use belay_playbook::{ActionKind, Catalog, TargetType};
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const GUARDRAILS: &str = "guardrails:
  - name: protected
    applies_to: [\"*\"]
    never:
      cidrs: [203.0.113.0/24, 2001:db8:77::/48]
      domains: [crm.example.com, bücher.example]
      hosts:
        - { name: fin-cfo-lt01.corp.example, addresses: [10.20.1.15] }
      users: [svc-backup]
    on_violation: hold
";

fn guardrails() -> Guardrails {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("g.yaml"), GUARDRAILS).unwrap();
    Guardrails::load(dir.path()).unwrap()
}

/// What a notation names, and so which target types can carry it.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Address,
    Domain,
    Host,
    User,
}

fn takes(kind: Kind, t: TargetType) -> bool {
    use TargetType as T;
    match kind {
        Kind::Address => matches!(t, T::Ip | T::Url | T::Host | T::Generic),
        Kind::Domain => matches!(t, T::Domain | T::Url | T::Generic),
        Kind::Host => matches!(t, T::Host | T::Generic),
        Kind::User => matches!(t, T::User | T::Email | T::Generic),
    }
}

fn case(s: &str, upper: &[bool]) -> String {
    s.chars()
        .zip(upper.iter().cycle())
        .map(|(c, u)| if *u { c.to_ascii_uppercase() } else { c })
        .collect()
}

/// Ways to write an IPv4 address (or a network holding it) that some system reads as it.
fn address_forms(a: Ipv4Addr, wider: u8) -> Vec<String> {
    let [w, x, y, z] = a.octets();
    let n = u32::from(a);
    let (hi, lo) = (n >> 16, n & 0xffff);
    let net = ipnet::Ipv4Net::new(a, wider).unwrap().trunc();
    vec![
        a.to_string(),
        format!("{a}/32"),
        net.to_string(),
        format!("::ffff:{a}"),
        format!("::FFFF:{hi:X}:{lo:x}"),
        format!("[::ffff:{a}]"),
        format!("0:0:0:0:0:ffff:{hi:04x}:{lo:04x}"),
        format!("::ffff:{}/{}", net.network(), 96 + u32::from(wider)),
        format!("::{a}"),
        format!("64:ff9b::{a}"),
        format!("2002:{hi:x}:{lo:x}::1"),
        format!("http://{a}/x"),
        format!("https://u:p@[::ffff:{a}]:8443/"),
        // Loose IPv4 notations: refused, never passed.
        n.to_string(),
        format!("0x{w:X}.{x}.{y}.{z}"),
        format!("0{w:o}.{x}.{y}.{z}"),
        format!("{w}.{x}.{y}.{z:03}"),
        format!("{w}.{x}.{}", (u32::from(y) << 8) | u32::from(z)),
        format!("{a}."),
    ]
}

fn domain_forms(base: &str, sub: &str, upper: &[bool], dot: char) -> Vec<String> {
    let full = if sub.is_empty() {
        base.to_owned()
    } else {
        format!("{sub}.{base}")
    };
    let cased = case(&full, upper);
    vec![
        cased.clone(),
        format!("{cased}."),
        cased.replace('.', &dot.to_string()),
        format!("https://user@{cased}:443/path?q"),
        format!("{cased}/"),
        format!("{cased}:8080"),
        format!("http://{cased}"),
        format!("*.{cased}"),
    ]
}

fn notations() -> impl Strategy<Value = (Kind, String)> {
    let upper = prop::collection::vec(any::<bool>(), 1..8);
    let address = (any::<u8>(), 8u8..=24, any::<bool>(), 0usize..19).prop_map(|(z, w, host, i)| {
        let a = if host {
            Ipv4Addr::new(10, 20, 1, 15)
        } else {
            Ipv4Addr::new(203, 0, 113, z)
        };
        // The host's own address is protected alone: a wider block "contains" it.
        (Kind::Address, address_forms(a, w)[i].clone())
    });
    let domain = (
        prop_oneof![
            Just("crm.example.com"),
            Just("bücher.example"),
            Just("xn--bcher-kva.example"),
            Just("BÜCHER.example")
        ],
        prop_oneof![Just(""), Just("eu"), Just("login.eu")],
        upper.clone(),
        prop_oneof![Just('\u{ff0e}'), Just('\u{3002}'), Just('\u{ff61}')],
        0usize..8,
    )
        .prop_map(|(b, s, u, d, i)| (Kind::Domain, domain_forms(b, s, &u, d)[i].clone()));
    let host = (upper.clone(), 0usize..4).prop_map(|(u, i)| {
        let forms = [
            case("fin-cfo-lt01", &u),
            case("fin-cfo-lt01.corp.example", &u),
            format!("{}.", case("fin-cfo-lt01.corp.example", &u)),
            "10.20.1.15".to_owned(),
        ];
        (Kind::Host, forms[i].clone())
    });
    let user = (upper, 0usize..5).prop_map(|(u, i)| {
        let name = case("svc-backup", &u);
        let forms = [
            name.clone(),
            format!(" {name} "),
            format!("CORP\\{name}"),
            format!("{name}@corp.example"),
            format!("corp.example\\{name}"),
        ];
        (Kind::User, forms[i].clone())
    });
    prop_oneof![address, domain, host, user]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_notation_of_a_protected_target_passes((kind, target) in notations()) {
        let g = guardrails();
        let catalog = Catalog::builtin();
        let (recent, baselines) = (HashMap::new(), HashMap::new());
        let targets = vec![target.clone()];
        let mut checked = 0;
        for spec in catalog.iter().filter(|s| s.kind == ActionKind::Change) {
            let Some(t) = spec.target.as_ref().filter(|t| takes(kind, t.kind)) else {
                continue;
            };
            let ctx = Context { action: spec, targets: &targets, recent: &recent, baselines: &baselines, identities: &Default::default() };
            for guarded in [false, true] {
                let v = g.check_at(&[], &ctx, guarded);
                prop_assert_eq!(v.len(), 1);
                prop_assert!(
                    !v[0].pass,
                    "{} ({:?} target) passed `{}` at {}",
                    spec.name, t.kind, target, if guarded { "guarded" } else { "log" }
                );
            }
            checked += 1;
        }
        prop_assert!(checked > 0);
    }
}

fn verdict(action: &str, target: &str) -> String {
    let g = guardrails();
    let catalog = Catalog::builtin();
    let (recent, baselines) = (HashMap::new(), HashMap::new());
    let targets = vec![target.to_owned()];
    let spec = catalog.get(action).unwrap();
    let ctx = Context {
        action: spec,
        targets: &targets,
        recent: &recent,
        baselines: &baselines,
        identities: &Default::default(),
    };
    g.check(&[], &ctx).remove(0).reason
}

#[test]
fn a_wider_network_contains_the_protected_one() {
    assert!(
        verdict("firewall.block_ip", "203.0.112.0/22").contains("203.0.112.0/22 contains"),
        "{}",
        verdict("firewall.block_ip", "203.0.112.0/22")
    );
    assert!(verdict("firewall.block_ip", "203.0.113.7").contains("inside a protected network"));
    assert_eq!(verdict("firewall.block_ip", "203.0.114.1"), "ok");
    assert_eq!(verdict("dns.sinkhole_domain", "notcrm.example.com"), "ok");
    assert!(verdict("firewall.block_ip", "0xCB.0.113.1").contains("ambiguous"));
}
