//! No secret value reaches an output, an error message, a log line or a debug print, even on
//! the failure paths (refused credentials, faults, the breaker, the allow-list, bad input).

use belay_connectors::http::spec::Spec;
use belay_connectors::http::{Auth, HttpConnectorConfig, HttpSettings};
use belay_connectors::{Call, Connector, Http, Secret, SecretSource};
use belay_lab::{Lab, LabConfig};
use belay_playbook::Catalog;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_appears_in_outputs_errors_or_logs() {
    let secret = format!("belay-test-secret-{:016x}", fastrand::u64(..));
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let lab = Lab::start(LabConfig {
        token: secret.clone(),
        fault_rate: 0.3,
        retry_after: 0,
        stall: Duration::from_millis(800),
        ..LabConfig::default()
    })
    .await
    .unwrap();
    let mut produced: Vec<String> = Vec::new();

    // Credentials resolved from config the way belay.toml gives them.
    let mut secrets = SecretSource::env();
    secrets.set("LAB_TOKEN", &secret);
    let auths = [
        json!({ "type": "bearer", "token": "${{ secrets.LAB_TOKEN }}" }),
        json!({ "type": "basic", "username": "belay", "password": "${{ secrets.LAB_TOKEN }}" }),
        json!({ "type": "api_key", "key": "${{ secrets.LAB_TOKEN }}" }),
        json!({ "type": "oauth2", "token_url": format!("{}/oauth/token", lab.base_url), "client_id": "belay", "client_secret": "${{ secrets.LAB_TOKEN }}" }),
    ];
    for auth in auths {
        let config: HttpConnectorConfig = serde_json::from_value(json!({
            "spec": "edr-lab",
            "base_url": lab.base_url,
            "auth": auth,
            "timeout": "300ms",
            "retries": 2,
            "backoff": "1ms",
            "breaker": { "failures": 3, "cooldown": "1h" },
        }))
        .unwrap();
        produced.push(format!("{config:?}"));
        let c = Http::from_config("edr", &config, &secrets, &Catalog::builtin()).unwrap();
        produced.push(format!("{c:?}"));
        let inputs = [
            ("edr.status", json!({ "host": "fin-cfo-lt01" })),
            ("edr.status", json!({ "host": "nope" })),
            (
                "edr.set_monitoring",
                json!({ "host": "fin-cfo-lt01", "level": "high" }),
            ),
            (
                "edr.set_monitoring",
                json!({ "host": "fin-cfo-lt01", "level": "bogus" }),
            ),
            ("edr.isolate_host", json!({ "host": "prn-floor2" })),
            ("edr.scan", json!({ "host": "eng-ws-101" })),
            ("edr.search_ioc", json!({ "indicators": [secret.clone()] })),
        ];
        for _ in 0..3 {
            for (action, input) in &inputs {
                let r = c
                    .call(Call {
                        action,
                        input,
                        idempotency_key: Some("k"),
                        before: None,
                    })
                    .await;
                match r {
                    Ok(v) => produced.push(v.to_string()),
                    Err(e) => produced.push(format!("{e} {e:?}")),
                }
                match c.read_state(action, input).await {
                    Ok(v) => produced.push(v.to_string()),
                    Err(e) => produced.push(format!("{e} {e:?}")),
                }
            }
        }
    }
    // A wrong credential, and a config whose secret is missing.
    let spec = Spec::builtin("edr-lab").unwrap().unwrap();
    let settings = HttpSettings {
        auth: Auth::Bearer(Secret::new(format!("{secret}-wrong"))),
        ..HttpSettings::new(lab.base_url.clone())
    };
    produced.push(format!("{settings:?}"));
    let c = Http::new("edr", spec, settings).unwrap();
    let input = json!({ "host": "fin-cfo-lt01" });
    if let Err(e) = c
        .call(Call {
            action: "edr.status",
            input: &input,
            idempotency_key: None,
            before: None,
        })
        .await
    {
        produced.push(format!("{e} {e:?}"));
    }
    let missing = SecretSource::env()
        .resolve("${{ secrets.BELAY_SURELY_UNSET_SECRET_42 }}")
        .unwrap_err();
    produced.push(missing.to_string());

    let everything = format!(
        "{}\n{}",
        produced.join("\n"),
        String::from_utf8_lossy(&logs.0.lock().unwrap())
    );
    assert!(
        everything.contains("edr"),
        "the test produced output to check"
    );
    assert!(
        everything.contains("***") || everything.contains("401"),
        "failure paths were exercised"
    );
    assert!(
        !everything.contains(&secret),
        "the secret leaked:\n{}",
        everything
            .lines()
            .filter(|l| l.contains(&secret))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
