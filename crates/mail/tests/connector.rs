//! The `email.parse` action through the connector, checked against the action catalog.

use base64::Engine as _;
use belay_connector_api::{Call, Connector, ErrorKind};
use belay_mail::Email;
use belay_playbook::Catalog;
use serde_json::{Value, json};

const REPORT: &str = "From: Alice <alice@corp.example>\r\n\
To: phish@corp.example\r\n\
Subject: Fwd: please check\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"R\"\r\n\
\r\n\
--R\r\n\
Content-Type: text/plain\r\n\
\r\n\
This looks fake, see hxxps://not-the-suspect[.]example/ for my notes.\r\n\
--R\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Received: from mx.corp.example (mx.corp.example [10.1.1.1]) by mail.corp.example\r\n\
Received: from bad.example (unknown [45.90.99.64]) by mx.corp.example\r\n\
From: \"IT Desk\" <it@c0rp-example.net>\r\n\
Reply-To: collect@evil.example\r\n\
To: alice@corp.example\r\n\
Subject: =?UTF-8?Q?Password_expir=C3=A9?=\r\n\
Authentication-Results: mx.corp.example; spf=fail smtp.mailfrom=c0rp-example.net; dkim=none\r\n\
Content-Type: text/html; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<p>Keep your password: <a href=3D\"https://login.c0rp-example.net/reset?u=3Dalice\">https://sso.corp.example/</a></p>\r\n\
--R--\r\n";

async fn call(input: Value) -> Result<Value, belay_connector_api::ActionError> {
    Email::default()
        .call(Call {
            action: "email.parse",
            input: &input,
            idempotency_key: None,
            before: None,
        })
        .await
}

#[tokio::test]
async fn a_report_is_unwrapped_and_the_output_matches_the_catalog() {
    let input = json!({ "message": REPORT });
    let spec = Catalog::builtin();
    let spec = spec
        .get("email.parse")
        .expect("email.parse is in the catalog");
    spec.validate_input(&input).expect("valid input");
    let out = call(input).await.unwrap();
    jsonschema::validate(&spec.outputs, &out).unwrap_or_else(|e| panic!("{e}: {out}"));

    assert_eq!(out["unwrapped"], true);
    assert_eq!(out["reporter"], "alice@corp.example");
    assert_eq!(out["sender"], "it@c0rp-example.net");
    assert_eq!(out["reply_to"], "collect@evil.example");
    assert_eq!(out["subject"], "Password expiré");
    assert_eq!(out["originating_ip"], "45.90.99.64");
    assert_eq!(out["authentication"]["spf"], "fail");
    assert_eq!(
        out["urls"],
        json!(["https://login.c0rp-example.net/reset?u=alice"]),
        "the report's own text is not the suspect's"
    );
    let link = &out["links"][0];
    assert_eq!(link["text_host"], "sso.corp.example");
    assert_eq!(link["text_mismatch"], true);
    assert_eq!(link["registrable_domain"], "c0rp-example.net");
    let indicators = out["suspicion"]["indicators"].as_array().unwrap();
    for want in ["link_text_mismatch", "reply_to_elsewhere", "auth_failed"] {
        assert!(
            indicators.iter().any(|i| i == want),
            "{want} in {indicators:?}"
        );
    }
}

#[tokio::test]
async fn without_unwrap_the_report_itself_is_parsed() {
    let out = call(json!({ "message": REPORT, "unwrap": false }))
        .await
        .unwrap();
    assert_eq!(out["unwrapped"], false);
    assert_eq!(out["sender"], "alice@corp.example");
    let urls = out["urls"].as_array().unwrap();
    assert!(
        urls.contains(&json!("https://not-the-suspect.example/")),
        "{urls:?}"
    );
    assert!(
        urls.contains(&json!("https://login.c0rp-example.net/reset?u=alice")),
        "links of the attached message are the report's too: {urls:?}"
    );
    assert_eq!(out["attachments"][0]["content_type"], "message/rfc822");
}

#[tokio::test]
async fn base64_input_gives_the_same_result_as_text() {
    let b64 = base64::engine::general_purpose::STANDARD.encode(REPORT);
    // Wrapped at 76 columns, the way mail tools write base64.
    let wrapped: Vec<String> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let from_b64 = call(json!({ "message": wrapped.join("\n"), "encoding": "base64" }))
        .await
        .unwrap();
    let from_text = call(json!({ "message": REPORT })).await.unwrap();
    assert_eq!(from_b64, from_text);
}

#[tokio::test]
async fn bad_input_is_a_permanent_error_that_says_why() {
    let e = call(json!({ "message": "%%%", "encoding": "base64" }))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Permanent);
    assert!(e.message.contains("not valid base64"), "{}", e.message);
    let e = call(json!({ "message": "   \r\n" })).await.unwrap_err();
    assert!(e.message.contains("empty"), "{}", e.message);
    let e = Email::default()
        .call(Call {
            action: "email.send",
            input: &json!({}),
            idempotency_key: None,
            before: None,
        })
        .await
        .unwrap_err();
    assert!(
        e.message.contains("no action `email.send`"),
        "{}",
        e.message
    );
}

#[test]
fn an_event_carries_the_observables_and_the_raw_message() {
    let parsed = belay_mail::parse_with(
        REPORT.as_bytes(),
        &belay_mail::ParseOptions {
            unwrap: true,
            own_relays: vec![],
            ..Default::default()
        },
    )
    .unwrap();
    let ev = belay_mail::to_event(REPORT.as_bytes(), &parsed, "email:test");
    assert_eq!(ev.kind, "phishing.reported");
    assert!(ev.id.starts_with("email-") && ev.id.len() == 6 + 64);
    assert_eq!(
        ev.observables.emails,
        ["it@c0rp-example.net", "collect@evil.example"]
    );
    assert_eq!(ev.observables.ips, ["45.90.99.64"]);
    assert_eq!(
        ev.observables.domains,
        ["login.c0rp-example.net", "c0rp-example.net"]
    );
    assert_eq!(ev.data["message"], REPORT);
    assert_eq!(ev.data["message_encoding"], "text");
    assert!(
        ev.data["summary"].get("html").is_none(),
        "bodies are not copied twice"
    );
    assert_eq!(ev.severity, belay_model::Severity::High);
    // Round trip through the model's validation, as the engine stores it.
    let back = belay_model::Event::from_json(ev.to_value()).unwrap();
    assert_eq!(back, ev);

    let latin1 = b"Subject: caf\xe9\r\n\r\nhttp://x.example/\r\n";
    let p = belay_mail::parse(latin1).unwrap();
    let ev = belay_mail::to_event(latin1, &p, "email:test");
    assert_eq!(ev.data["message_encoding"], "base64");
}
