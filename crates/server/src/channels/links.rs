//! E-mail decision links: `BASE/approvals/email/TOKEN`, where TOKEN is the base64url JSON of
//! the claims (approval id, change hash, decision, recipient, expiry, nonce) and an
//! HMAC-SHA256 of them with the server's key. A link decides once (its nonce is recorded when
//! used; the approve and deny links of one message share it) and not after the approval
//! expires. The confirmation page's form carries an anti-forgery token bound to the link.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a link decides, for whom, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The approval.
    #[serde(rename = "a")]
    pub approval_id: String,
    /// The change hash the recipient was shown.
    #[serde(rename = "h")]
    pub change_hash: String,
    /// `approve` or `deny`.
    #[serde(rename = "d")]
    pub decision: String,
    /// The belay user the link was made for: the decider.
    #[serde(rename = "r")]
    pub recipient: String,
    /// Unix ms after which the link is refused (the approval's deadline).
    #[serde(rename = "e")]
    pub expires_at: i64,
    /// Random; recorded when the link is used.
    #[serde(rename = "n")]
    pub nonce: String,
}

/// Why a link is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token this server made, or altered.
    #[error("this link is not valid (it was altered, or not made by this server)")]
    Invalid,
    /// Past the approval's deadline.
    #[error("this link expired with its approval")]
    Expired,
}

const DOMAIN: &[u8] = b"belay approval link v1\n";
const FORM_DOMAIN: &[u8] = b"belay approval form v1\n";

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The link token of `claims` signed with `key`.
pub fn sign(key: &[u8], claims: &Claims) -> String {
    let body = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
    let mut m = mac(key);
    m.update(DOMAIN);
    m.update(body.as_bytes());
    format!("{body}.{}", B64.encode(m.finalize().into_bytes()))
}

/// The claims of `token` if `key` signed it (compared in constant time) and it has not expired
/// at `now` (Unix ms).
pub fn verify(key: &[u8], token: &str, now: i64) -> Result<Claims, LinkError> {
    let (body, sig) = token.split_once('.').ok_or(LinkError::Invalid)?;
    let sig = B64.decode(sig).map_err(|_| LinkError::Invalid)?;
    let mut m = mac(key);
    m.update(DOMAIN);
    m.update(body.as_bytes());
    m.verify_slice(&sig).map_err(|_| LinkError::Invalid)?;
    let bytes = B64.decode(body).map_err(|_| LinkError::Invalid)?;
    let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| LinkError::Invalid)?;
    if !matches!(claims.decision.as_str(), "approve" | "deny") {
        return Err(LinkError::Invalid);
    }
    if now >= claims.expires_at {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

/// The anti-forgery token of the confirmation form of `token`.
pub fn form_token(key: &[u8], token: &str) -> String {
    let mut m = mac(key);
    m.update(FORM_DOMAIN);
    m.update(token.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Whether `given` is the anti-forgery token of `token` (constant time).
pub fn form_token_ok(key: &[u8], token: &str, given: &str) -> bool {
    let Ok(given) = hex::decode(given.trim()) else {
        return false;
    };
    let mut m = mac(key);
    m.update(FORM_DOMAIN);
    m.update(token.as_bytes());
    m.verify_slice(&given).is_ok()
}

/// A fresh random nonce (128 bits, hex).
pub fn nonce() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            approval_id: "a1".into(),
            change_hash: "h".repeat(64),
            decision: "approve".into(),
            recipient: "ada".into(),
            expires_at: 2_000,
            nonce: "n1".into(),
        }
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_not_when_altered() {
        let key = b"a key of thirty-two bytes or more!!";
        let t = sign(key, &claims());
        assert_eq!(verify(key, &t, 1_000), Ok(claims()));
        assert_eq!(verify(key, &t, 2_000), Err(LinkError::Expired));
        assert_eq!(verify(b"another key", &t, 1_000), Err(LinkError::Invalid));
        // Every single-byte change is refused.
        for i in 0..t.len() {
            let mut b = t.clone().into_bytes();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(b).unwrap();
            if altered != t {
                assert!(verify(key, &altered, 1_000).is_err(), "byte {i} altered");
            }
        }
        let f = form_token(key, &t);
        assert!(form_token_ok(key, &t, &f));
        assert!(!form_token_ok(key, &format!("{t}x"), &f));
        assert!(!form_token_ok(key, &t, "00"));
    }
}
