//! Encryption of secrets at rest (webhook signing secrets in Postgres).
//!
//! A sealed value reads `sealed:v1:<key id>:<base64url(nonce ‖ ciphertext)>`,
//! XChaCha20-Poly1305 with a random 192-bit nonce (random nonces of that
//! size never repeat in practice, so no counter has to be kept across
//! replicas). The key id travels with the value, so a key can be rotated:
//! configure the new key first in the list, keep the old one after it until
//! every row has been resealed (done at startup), then drop it. The
//! associated data binds a value to its row: a ciphertext copied into
//! another organization's row does not open.

use std::collections::HashMap;

use base64::{Engine, engine::general_purpose::STANDARD, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    KeyInit, XChaCha20Poly1305, XNonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};

const PREFIX: &str = "sealed:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// The key used when a development deployment configures none. It is in
/// this source file, so it protects nothing: production refuses to use it.
const DEVELOPMENT_KEY: &str = "dev:ZGV2ZWxvcG1lbnQta2V5LW5vdC1hLXNlY3JldC0hISE=";

#[derive(Debug, thiserror::Error)]
pub enum SealingError {
    #[error(
        "invalid TRIGGERS_SECRET_KEYS entry #{0}: expected `<id>:<base64 of 32 bytes>` \
         (make one with `triggers-api new-secret-key`)"
    )]
    BadKey(usize),
    #[error("TRIGGERS_SECRET_KEYS names key `{0}` twice")]
    DuplicateKey(String),
    #[error("TRIGGERS_SECRET_KEYS holds no key")]
    NoKey,
    #[error("a secret is sealed with key `{0}`, which TRIGGERS_SECRET_KEYS does not hold")]
    UnknownKey(String),
    #[error("a sealed secret is malformed or was altered")]
    Corrupt,
}

/// The configured keys: the first seals, any opens.
pub struct Sealer {
    primary: String,
    keys: HashMap<String, XChaCha20Poly1305>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.keys.keys().collect();
        ids.sort();
        f.debug_struct("Sealer")
            .field("primary", &self.primary)
            .field("key_ids", &ids)
            .finish()
    }
}

impl Sealer {
    /// Parses `id:base64,id:base64,...`.
    pub fn from_spec(spec: &str) -> Result<Self, SealingError> {
        let mut primary = None;
        let mut keys = HashMap::new();
        for (n, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, encoded) = entry.split_once(':').ok_or(SealingError::BadKey(n + 1))?;
            let id_ok = !id.is_empty()
                && id.len() <= 32
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| SealingError::BadKey(n + 1))?;
            if !id_ok || bytes.len() != KEY_BYTES {
                return Err(SealingError::BadKey(n + 1));
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes)
                .map_err(|_| SealingError::BadKey(n + 1))?;
            if keys.insert(id.to_owned(), cipher).is_some() {
                return Err(SealingError::DuplicateKey(id.to_owned()));
            }
            primary.get_or_insert_with(|| id.to_owned());
        }
        Ok(Self {
            primary: primary.ok_or(SealingError::NoKey)?,
            keys,
        })
    }

    /// The publicly known key development deployments fall back to.
    pub fn development() -> Self {
        Self::from_spec(DEVELOPMENT_KEY).expect("the development key is well-formed")
    }

    /// A new key spec for `id`, for `triggers-api new-secret-key`.
    pub fn new_key_spec(id: &str) -> String {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        format!("{id}:{}", STANDARD.encode(key))
    }

    pub fn seal(&self, plaintext: &str, context: &[u8]) -> Result<String, SealingError> {
        let cipher = self
            .keys
            .get(&self.primary)
            .ok_or_else(|| SealingError::UnknownKey(self.primary.clone()))?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: context,
                },
            )
            .map_err(|_| SealingError::Corrupt)?;
        let mut blob = Vec::with_capacity(NONCE_BYTES + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(format!(
            "{PREFIX}{}:{}",
            self.primary,
            URL_SAFE_NO_PAD.encode(blob)
        ))
    }

    /// The plaintext of a sealed value. A value that is not sealed (a row
    /// written before encryption, not yet resealed) is returned as it is.
    pub fn open(&self, stored: &str, context: &[u8]) -> Result<String, SealingError> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, encoded) = rest.split_once(':').ok_or(SealingError::Corrupt)?;
        let cipher = self
            .keys
            .get(id)
            .ok_or_else(|| SealingError::UnknownKey(id.to_owned()))?;
        let blob = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| SealingError::Corrupt)?;
        if blob.len() < NONCE_BYTES {
            return Err(SealingError::Corrupt);
        }
        let (nonce, sealed) = blob.split_at(NONCE_BYTES);
        let plain = cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context,
                },
            )
            .map_err(|_| SealingError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| SealingError::Corrupt)
    }

    /// How every value sealed with the current key begins.
    pub fn current_prefix(&self) -> String {
        format!("{PREFIX}{}:", self.primary)
    }

    /// Whether `stored` is already sealed with the current key.
    pub fn is_current(&self, stored: &str) -> bool {
        stored.starts_with(&self.current_prefix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_row() {
        let old = Sealer::new_key_spec("old");
        let sealer = Sealer::from_spec(&old).unwrap();
        let sealed = sealer.seal("whsec_abc", b"org-1").unwrap();
        assert!(!sealed.contains("whsec_abc"));
        assert!(sealer.is_current(&sealed));
        assert_eq!(sealer.open(&sealed, b"org-1").unwrap(), "whsec_abc");
        assert!(matches!(
            sealer.open(&sealed, b"org-2"),
            Err(SealingError::Corrupt)
        ));

        let rotated = Sealer::from_spec(&format!("{},{old}", Sealer::new_key_spec("new"))).unwrap();
        assert!(!rotated.is_current(&sealed));
        assert_eq!(rotated.open(&sealed, b"org-1").unwrap(), "whsec_abc");
        let resealed = rotated.seal("whsec_abc", b"org-1").unwrap();
        assert!(
            matches!(sealer.open(&resealed, b"org-1"), Err(SealingError::UnknownKey(id)) if id == "new")
        );
    }

    #[test]
    fn plaintext_rows_read_as_they_are_and_bad_specs_are_refused() {
        let sealer = Sealer::development();
        assert_eq!(sealer.open("whsec_plain", b"x").unwrap(), "whsec_plain");
        for bad in ["", "k1", "k1:notbase64!", "k1:c2hvcnQ=", "bad id:AAAA"] {
            assert!(Sealer::from_spec(bad).is_err(), "{bad}");
        }
        let key = Sealer::new_key_spec("k1");
        assert!(matches!(
            Sealer::from_spec(&format!("{key},{key}")),
            Err(SealingError::DuplicateKey(_))
        ));
    }
}
