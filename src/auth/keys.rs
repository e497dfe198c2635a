//! API keys: their format, generation and hashing.
//!
//! A key reads `trg_<lookup>_<secret>`: `lookup` is 8 random bytes in hex,
//! stored in clear to find the key's row; `secret` is 32 random bytes
//! (256 bits) in base64url, stored only inside an argon2id hash of the whole
//! key. The `trg_` prefix lets secret scanners recognise a leaked key.

use argon2::{
    Algorithm, Argon2, Params, PasswordHasher, Version,
    password_hash::{SaltString, rand_core::OsRng},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "trg_";

/// A freshly generated key: shown to its owner once, then only its hash is kept.
pub struct NewKey {
    pub plaintext: String,
    pub lookup: String,
    pub hash: String,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot hash API key: {0}")]
pub struct HashError(String);

/// A new key's plaintext and its lookup part.
pub fn new_plaintext() -> (String, String) {
    let mut lookup = [0u8; 8];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut lookup);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let lookup = hex::encode(lookup);
    let plaintext = format!("{KEY_PREFIX}{lookup}_{}", URL_SAFE_NO_PAD.encode(secret));
    (plaintext, lookup)
}

/// argon2id memory of new keys' hashes, in KiB, and passes: one of the
/// settings OWASP lists as equal in strength to 19 MiB and 2 passes (the
/// crate's default), at under half the memory a hashing thread keeps.
pub(crate) const KEY_MEMORY_KIB: u32 = 7 * 1024;
pub(crate) const KEY_PASSES: u32 = 5;

pub(crate) fn key_params() -> Result<Params, HashError> {
    Params::new(KEY_MEMORY_KIB, KEY_PASSES, 1, None).map_err(|e| HashError(e.to_string()))
}

/// A key hashed with a fresh buffer; the service hashes through
/// [`super::hasher::Hasher`] instead, which reuses its memory.
pub fn generate() -> Result<NewKey, HashError> {
    let (plaintext, lookup) = new_plaintext();
    let salt = SaltString::generate(&mut OsRng);
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, key_params()?)
        .hash_password(plaintext.as_bytes(), &salt)
        .map_err(|e| HashError(e.to_string()))?
        .to_string();
    Ok(NewKey {
        plaintext,
        lookup,
        hash,
    })
}

/// The lookup part of a well-formed key; `None` for anything else.
pub fn lookup_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (lookup, secret) = rest.split_once('_')?;
    let well_formed =
        lookup.len() == 16 && lookup.bytes().all(|b| b.is_ascii_hexdigit()) && secret.len() == 43;
    well_formed.then_some(lookup)
}

/// Checks a key against its hash with the plain crate, as a reference for
/// tests; the service verifies through [`super::hasher::Hasher`].
#[cfg(test)]
pub(crate) fn verify(key: &str, stored_hash: &str) -> bool {
    use argon2::{PasswordHash, PasswordVerifier};
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(key.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// The digest a key is cached under: cheap, and useless to a reader of the cache.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_verifies_and_another_does_not() {
        let key = generate().unwrap();
        assert_eq!(lookup_of(&key.plaintext), Some(key.lookup.as_str()));
        assert!(verify(&key.plaintext, &key.hash));
        let other = generate().unwrap();
        assert!(!verify(&other.plaintext, &key.hash));
        assert!(!key.hash.contains(&key.plaintext[20..]));
    }

    #[test]
    fn malformed_keys_have_no_lookup() {
        for bad in [
            "",
            "trg_",
            "abc",
            "trg_zzzzzzzzzzzzzzzz_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "trg_0123456789abcdef_short",
        ] {
            assert_eq!(lookup_of(bad), None, "{bad}");
        }
    }
}
