//! Signed requests: HMAC-SHA256 over the sender's timestamp and the body, checked against any
//! active secret (two during a rotation) in constant time, with the timestamp within five
//! minutes of the server's clock. Two wire formats share it: belay's own webhooks and Slack's
//! interactivity callbacks.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a signed timestamp may be from the server's clock, in seconds.
pub const REPLAY_WINDOW_SECS: i64 = 300;

/// A wire format of signed requests.
#[derive(Debug, Clone, Copy)]
pub struct Scheme {
    /// The header carrying the signing time (Unix seconds), lower case.
    pub timestamp_header: &'static str,
    /// The header carrying the signature, lower case.
    pub signature_header: &'static str,
    /// What precedes the hex digest in the signature header.
    prefix: &'static str,
    /// What the MAC covers before the body: `{ts}` stands for the timestamp.
    framing: fn(i64) -> String,
    /// The headers' names as people read them, for error messages.
    shown: (&'static str, &'static str),
}

/// belay's webhooks: `X-Belay-Signature: sha256=<hex of HMAC("<ts>.<body>")>`.
pub const BELAY: Scheme = Scheme {
    timestamp_header: "x-belay-timestamp",
    signature_header: "x-belay-signature",
    prefix: "sha256=",
    framing: |ts| format!("{ts}."),
    shown: ("X-Belay-Timestamp", "X-Belay-Signature"),
};

/// Slack's callbacks: `X-Slack-Signature: v0=<hex of HMAC("v0:<ts>:<body>")>`.
pub const SLACK: Scheme = Scheme {
    timestamp_header: "x-slack-request-timestamp",
    signature_header: "x-slack-signature",
    prefix: "v0=",
    framing: |ts| format!("v0:{ts}:"),
    shown: ("X-Slack-Request-Timestamp", "X-Slack-Signature"),
};

impl Scheme {
    fn mac(&self, secret: &[u8], timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes a key of any length.
        let mut m =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
        m.update((self.framing)(timestamp).as_bytes());
        m.update(body);
        m
    }

    /// The signature header's value for `body` sent at `timestamp`, signed with `secret`.
    pub fn sign(&self, secret: &[u8], timestamp: i64, body: &[u8]) -> String {
        let digest = self.mac(secret, timestamp, body).finalize().into_bytes();
        format!("{}{}", self.prefix, hex::encode(digest))
    }

    /// Checks a request's signature against `secrets` (any one), its timestamp within the
    /// window of `now` (Unix seconds); the error says what is wrong, never a secret.
    pub fn verify(
        &self,
        secrets: &[Vec<u8>],
        headers: &HeaderMap,
        body: &[u8],
        now: i64,
    ) -> Result<(), String> {
        let (ts_name, sig_name) = self.shown;
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let ts: i64 = header(self.timestamp_header)
            .ok_or_else(|| format!("the {ts_name} header is missing"))?
            .trim()
            .parse()
            .map_err(|_| format!("{ts_name} is not Unix seconds"))?;
        if (now - ts).abs() > REPLAY_WINDOW_SECS {
            return Err("the signature's timestamp is outside the 5-minute window".into());
        }
        let given = header(self.signature_header)
            .ok_or_else(|| format!("the {sig_name} header is missing"))?
            .trim()
            .strip_prefix(self.prefix)
            .and_then(|h| hex::decode(h).ok())
            .ok_or_else(|| format!("{sig_name} is not {}<hex>", self.prefix))?;
        // Every secret is tried, each compared in constant time.
        let ok = secrets.iter().fold(false, |ok, secret| {
            self.mac(secret, ts, body).verify_slice(&given).is_ok() | ok
        });
        if ok {
            Ok(())
        } else {
            Err("the signature does not match".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(s: &Scheme, ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            s.timestamp_header,
            HeaderValue::from_str(&ts.to_string()).unwrap(),
        );
        h.insert(s.signature_header, HeaderValue::from_str(sig).unwrap());
        h
    }

    #[test]
    fn a_signature_verifies_with_either_active_secret_and_only_within_the_window() {
        for s in [BELAY, SLACK] {
            let body = b"{\"kind\":\"x\"}";
            let sig = s.sign(b"old", 1_000, body);
            let secrets = vec![b"new".to_vec(), b"old".to_vec()];
            assert_eq!(
                s.verify(&secrets, &headers(&s, 1_000, &sig), body, 1_100),
                Ok(())
            );
            let stale = s.verify(&secrets, &headers(&s, 1_000, &sig), body, 1_000 + 301);
            assert!(stale.unwrap_err().contains("5-minute window"));
            let other = s.verify(&secrets, &headers(&s, 1_000, &sig), b"{}", 1_000);
            assert_eq!(other, Err("the signature does not match".into()));
            let unknown = s.verify(&[b"new".to_vec()], &headers(&s, 1_000, &sig), body, 1_000);
            assert!(unknown.is_err());
        }
    }

    #[test]
    fn slack_signatures_match_slacks_published_example() {
        // https://api.slack.com/authentication/verifying-requests-from-slack
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            SLACK.sign(
                b"8f742231b10e8888abcd99yyyzzz85a5",
                1531420618,
                body.as_bytes()
            ),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn the_two_schemes_frame_the_timestamp_differently() {
        let b = BELAY.sign(b"k", 7, b"body");
        let s = SLACK.sign(b"k", 7, b"body");
        assert!(b.starts_with("sha256=") && s.starts_with("v0="));
        assert_ne!(b["sha256=".len()..], s["v0=".len()..]);
        // A Slack signature presented as belay's does not verify.
        let h = headers(&BELAY, 7, &format!("sha256={}", &s[3..]));
        assert!(BELAY.verify(&[b"k".to_vec()], &h, b"body", 7).is_err());
    }
}
