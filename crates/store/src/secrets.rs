//! Secrets at rest: connector credentials set with `belay secrets set` (or the API), stored
//! sealed with XChaCha20-Poly1305 under a key kept outside the store, never returned by any
//! command or route. The store keeps only ciphertexts, nonces and the id of the key that sealed
//! each; sets and deletions are audited with the name alone.
//!
//! A [`Keyring`] holds the active key (which seals) and the keys still accepted while a
//! rotation moves every secret to the active one. A key's id is the first 16 hex digits of
//! its SHA-256, so stored rows name the key without revealing it.

use crate::Result;
use async_trait::async_trait;
use base64::Engine as _;
use belay_model::AuditDraft;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Serialize;
use serde_json::json;
use std::fmt;
use std::path::Path;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// Why a key could not be loaded or a secret not sealed or opened. Never holds a value or key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file or variable is unusable.
    #[error("{0}")]
    Invalid(String),
    /// A stored secret is sealed under a key the keyring does not hold.
    #[error(
        "secret `{name}` is sealed under key {key_id}, which is not in the secrets key (keys held: {held})"
    )]
    UnknownKey {
        /// The secret.
        name: String,
        /// The key that sealed it.
        key_id: String,
        /// The ids the keyring holds.
        held: String,
    },
    /// The ciphertext does not open (altered, or sealed for another name).
    #[error("secret `{0}` does not decrypt: the stored value was altered or moved")]
    Tampered(String),
}

/// One key and its id.
#[derive(Clone)]
pub struct SecretKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl SecretKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> std::result::Result<Self, KeyError> {
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Invalid(format!(
                "a secrets key is {KEY_LEN} bytes (base64), not {}",
                bytes.len()
            )));
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| KeyError::Invalid("a secrets key is 32 bytes".into()))?;
        let id = belay_model::sha256_hex(bytes)[..16].to_owned();
        Ok(SecretKey { id, cipher })
    }

    /// A new random key, as its base64 text.
    pub fn generate() -> std::result::Result<String, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes)
            .map_err(|e| KeyError::Invalid(format!("no randomness for a key: {e}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The key's id (16 hex digits of its SHA-256).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

/// The active key and the older keys still accepted (during a rotation).
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<SecretKey>,
}

impl Keyring {
    /// Keys from text: base64 keys separated by newlines or commas, the active one first;
    /// blank lines and `#` comments are ignored. `origin` names where the text came from.
    pub fn parse(text: &str, origin: &str) -> std::result::Result<Keyring, KeyError> {
        let mut keys: Vec<SecretKey> = Vec::new();
        for (i, item) in text
            .lines()
            .flat_map(|l| l.split(','))
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .enumerate()
        {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(item)
                .map_err(|_| {
                    KeyError::Invalid(format!("{origin}: key #{} is not base64", i + 1))
                })?;
            let key = SecretKey::from_bytes(&bytes)
                .map_err(|e| KeyError::Invalid(format!("{origin}: key #{}: {e}", i + 1)))?;
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(KeyError::Invalid(format!("{origin} holds no key")));
        }
        Ok(Keyring { keys })
    }

    /// The keys of a key file, which must not be readable by group or others.
    pub fn from_file(path: &Path) -> std::result::Result<Keyring, KeyError> {
        let origin = format!("secrets key file {}", path.display());
        let meta = std::fs::metadata(path)
            .map_err(|e| KeyError::Invalid(format!("{origin}: cannot read it: {e}")))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::Invalid(format!(
                    "{origin}: mode {mode:04o} lets other users read it; run `chmod 600 {}`",
                    path.display()
                )));
            }
        }
        #[cfg(not(unix))]
        let _ = meta;
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError::Invalid(format!("{origin}: cannot read it: {e}")))?;
        Self::parse(&text, &origin)
    }

    /// The key that seals new values.
    pub fn active(&self) -> &SecretKey {
        &self.keys[0]
    }

    /// Every key's id, the active one first.
    pub fn ids(&self) -> Vec<String> {
        self.keys.iter().map(|k| k.id.clone()).collect()
    }

    /// Seals `value` as secret `name` under the active key, with a fresh random nonce and the
    /// name as associated data (a ciphertext moved to another name does not open).
    pub fn seal(
        &self,
        name: &str,
        value: &[u8],
        at: i64,
    ) -> std::result::Result<SealedSecret, KeyError> {
        let key = self.active();
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| KeyError::Invalid(format!("no randomness for a nonce: {e}")))?;
        let ciphertext = key
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Invalid("sealing a secret failed".into()))?;
        Ok(SealedSecret {
            name: name.to_owned(),
            key_id: key.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
            created_at: at,
            updated_at: at,
            rotated_at: None,
        })
    }

    /// Opens a stored secret with the key that sealed it.
    pub fn open(&self, s: &SealedSecret) -> std::result::Result<Vec<u8>, KeyError> {
        let key =
            self.keys
                .iter()
                .find(|k| k.id == s.key_id)
                .ok_or_else(|| KeyError::UnknownKey {
                    name: s.name.clone(),
                    key_id: s.key_id.clone(),
                    held: self.ids().join(", "),
                })?;
        if s.nonce.len() != NONCE_LEN {
            return Err(KeyError::Tampered(s.name.clone()));
        }
        key.cipher
            .decrypt(
                XNonce::from_slice(&s.nonce),
                Payload {
                    msg: &s.ciphertext,
                    aad: s.name.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Tampered(s.name.clone()))
    }
}

/// Whether `name` is a usable secret name: what `${{ secrets.NAME }}` can reference.
pub fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A secret as stored: sealed, never its value.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// Its name (`${{ secrets.NAME }}`).
    pub name: String,
    /// The id of the key that sealed it.
    pub key_id: String,
    /// The XChaCha20 nonce.
    pub nonce: Vec<u8>,
    /// The ciphertext with its Poly1305 tag.
    pub ciphertext: Vec<u8>,
    /// When it was first set (Unix ms).
    pub created_at: i64,
    /// When its value was last set (Unix ms).
    pub updated_at: i64,
    /// When it was last sealed again under a new key (Unix ms).
    pub rotated_at: Option<i64>,
}

impl fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedSecret({}, key {})", self.name, self.key_id)
    }
}

/// What may be shown of a secret: never its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// The id of the key that seals it.
    pub key_id: String,
    /// When it was first set (Unix ms).
    pub created_at: i64,
    /// When its value was last set (Unix ms).
    pub updated_at: i64,
    /// When it was last sealed under a new key (Unix ms).
    pub rotated_at: Option<i64>,
}

impl From<&SealedSecret> for SecretInfo {
    fn from(s: &SealedSecret) -> Self {
        SecretInfo {
            name: s.name.clone(),
            key_id: s.key_id.clone(),
            created_at: s.created_at,
            updated_at: s.updated_at,
            rotated_at: s.rotated_at,
        }
    }
}

/// The stored secrets. Every [`crate::Store`] is one.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Stores (or replaces) a sealed secret, audited `secret.set` as `actor` with its name and
    /// key id (never the value). A replaced secret keeps its `created_at`.
    async fn put_secret(&self, secret: &SealedSecret, actor: &str) -> Result<()>;
    /// Deletes a secret, audited `secret.deleted`; false (nothing audited) if there was none.
    async fn delete_secret(&self, name: &str, actor: &str) -> Result<bool>;
    /// Every secret, sealed, by name.
    async fn sealed_secrets(&self) -> Result<Vec<SealedSecret>>;
    /// Replaces a secret's seal (a key rotation) only if it is still sealed under `from_key`
    /// with the same ciphertext it was read with; false when it changed meanwhile.
    async fn reseal_secret(&self, secret: &SealedSecret, from: &SealedSecret) -> Result<bool>;

    /// One secret, sealed.
    async fn sealed_secret(&self, name: &str) -> Result<Option<SealedSecret>> {
        Ok(self
            .sealed_secrets()
            .await?
            .into_iter()
            .find(|s| s.name == name))
    }

    /// What may be shown of every secret, by name.
    async fn secret_infos(&self) -> Result<Vec<SecretInfo>> {
        Ok(self
            .sealed_secrets()
            .await?
            .iter()
            .map(SecretInfo::from)
            .collect())
    }
}

pub(crate) fn set(s: &SealedSecret, actor: &str, replaced: bool) -> AuditDraft {
    AuditDraft {
        kind: "secret.set".into(),
        actor: actor.into(),
        subject: s.name.clone(),
        detail: json!({ "name": s.name, "key_id": s.key_id, "replaced": replaced }),
    }
}

pub(crate) fn deleted(name: &str, actor: &str) -> AuditDraft {
    AuditDraft {
        kind: "secret.deleted".into(),
        actor: actor.into(),
        subject: name.into(),
        detail: json!({ "name": name }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring() -> Keyring {
        Keyring::parse(&SecretKey::generate().unwrap(), "test").unwrap()
    }

    #[test]
    fn sealed_values_open_only_under_their_name_and_key() {
        let r = ring();
        let s = r.seal("EDR_TOKEN", b"tok-very-secret", 1).unwrap();
        assert!(!s.ciphertext.windows(7).any(|w| w == b"tok-ver"));
        assert_eq!(r.open(&s).unwrap(), b"tok-very-secret");
        let moved = SealedSecret {
            name: "OTHER".into(),
            ..s.clone()
        };
        assert!(matches!(r.open(&moved), Err(KeyError::Tampered(_))));
        let other = ring();
        assert!(matches!(other.open(&s), Err(KeyError::UnknownKey { .. })));
        // Two seals of one value differ (a random nonce each).
        assert_ne!(
            r.seal("EDR_TOKEN", b"tok-very-secret", 1)
                .unwrap()
                .ciphertext,
            s.ciphertext
        );
    }

    #[test]
    fn a_keyring_accepts_its_older_keys() {
        let old = SecretKey::generate().unwrap();
        let new = SecretKey::generate().unwrap();
        let before = Keyring::parse(&old, "k").unwrap();
        let s = before.seal("A", b"v", 1).unwrap();
        let during = Keyring::parse(&format!("{new}\n{old}\n"), "k").unwrap();
        assert_eq!(during.open(&s).unwrap(), b"v");
        assert_ne!(during.active().id(), s.key_id);
        assert!(Keyring::parse("bm90LWEta2V5", "k").is_err());
        assert!(Keyring::parse("# nothing\n", "k").is_err());
    }
}
