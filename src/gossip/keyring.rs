//! The gossip keyring: AES-GCM keys from Consul's `encrypt` setting.
//!
//! A key is 16, 24 or 32 bytes (AES-128/192/256-GCM), given in base64 as Consul does. The
//! first key of the ring (the primary) encrypts; every key is tried to decrypt, so a pool can
//! rotate keys the way `consul keyring` does. Every sealed message gets a fresh random 12-byte
//! nonce, and the envelope's version byte is authenticated as associated data.
//!
//! Invariants: key bytes never reach a log or a `Debug` output; opening never panics on any
//! input.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand010::RngExt as _;

/// The nonce that starts every sealed message, in bytes.
pub(super) const NONCE_BYTES: usize = 12;

/// The authentication tag that ends every sealed message, in bytes.
pub(super) const TAG_BYTES: usize = 16;

/// The most keys a ring holds (Consul rotates with two or three at a time).
pub(super) const KEYRING_KEYS_MAX: usize = 16;

/// AES-192-GCM with the standard 12-byte nonce (aes-gcm names only the 128 and 256 variants).
type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// One AES-GCM key, in the size the operator chose.
#[derive(Clone)]
pub(super) enum Cipher {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl Cipher {
    /// Builds the cipher for 16, 24 or 32 key bytes; `None` for any other length.
    pub(super) fn from_key_bytes(key: &[u8]) -> Option<Cipher> {
        match key.len() {
            16 => Aes128Gcm::new_from_slice(key).ok().map(|c| Cipher::Aes128(Box::new(c))),
            24 => Aes192Gcm::new_from_slice(key).ok().map(|c| Cipher::Aes192(Box::new(c))),
            32 => Aes256Gcm::new_from_slice(key).ok().map(|c| Cipher::Aes256(Box::new(c))),
            _ => None,
        }
    }

    /// Decodes a base64 key as Consul's `encrypt` holds it.
    pub(super) fn from_base64(key_base64: &str) -> Result<Cipher, String> {
        let key = BASE64
            .decode(key_base64.trim())
            .map_err(|error| format!("failed to decode the key from base64: {error}"))?;
        Cipher::from_key_bytes(&key)
            .ok_or_else(|| format!("key size must be 16, 24 or 32 bytes, got {} bytes", key.len()))
    }

    /// `nonce ‖ ciphertext ‖ tag` for `plaintext`, authenticating `associated`.
    pub(super) fn seal(&self, associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_BYTES] = rand010::rng().random();
        let nonce = Nonce::<U12>::from(nonce_bytes);
        let payload = Payload { msg: plaintext, aad: associated };
        let sealed = match self {
            Cipher::Aes128(cipher) => cipher.encrypt(&nonce, payload),
            Cipher::Aes192(cipher) => cipher.encrypt(&nonce, payload),
            Cipher::Aes256(cipher) => cipher.encrypt(&nonce, payload),
        };
        // AES-GCM only refuses plaintexts above 64 GiB; ours are bounded by the envelope.
        let ciphertext = sealed.expect("AES-GCM encrypts anything below 64 GiB");
        let mut out = Vec::with_capacity(NONCE_BYTES + ciphertext.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&ciphertext);
        out
    }

    /// The plaintext of `nonce ‖ ciphertext ‖ tag`, or `None` when it does not authenticate.
    pub(super) fn open(&self, associated: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let (nonce_bytes, ciphertext) = sealed.split_at(NONCE_BYTES);
        let nonce = Nonce::<U12>::try_from(nonce_bytes).ok()?;
        let payload = Payload { msg: ciphertext, aad: associated };
        match self {
            Cipher::Aes128(cipher) => cipher.decrypt(&nonce, payload).ok(),
            Cipher::Aes192(cipher) => cipher.decrypt(&nonce, payload).ok(),
            Cipher::Aes256(cipher) => cipher.decrypt(&nonce, payload).ok(),
        }
    }
}

/// 32 random bytes in base64: a new AES-256 key for `cairn keygen`.
pub(super) fn generate_key_base64() -> String {
    let key: [u8; 32] = rand010::rng().random();
    BASE64.encode(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_with_every_key_size() {
        for size in [16usize, 24, 32] {
            let key: Vec<u8> = (0..size).map(|byte| byte as u8).collect();
            let cipher = Cipher::from_base64(&BASE64.encode(&key)).expect("a valid key");
            let sealed = cipher.seal(b"v", b"hello");
            assert_eq!(sealed.len(), NONCE_BYTES + 5 + TAG_BYTES);
            assert_eq!(cipher.open(b"v", &sealed).as_deref(), Some(&b"hello"[..]));
            // The associated data is authenticated.
            assert_eq!(cipher.open(b"w", &sealed), None);
        }
    }

    #[test]
    fn another_key_or_a_flipped_bit_does_not_open() {
        let ours = Cipher::from_base64(&generate_key_base64()).expect("a generated key");
        let theirs = Cipher::from_base64(&generate_key_base64()).expect("a generated key");
        let mut sealed = ours.seal(b"", b"secret");
        assert_eq!(theirs.open(b"", &sealed), None);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert_eq!(ours.open(b"", &sealed), None);
        assert_eq!(ours.open(b"", &sealed[..10]), None);
        assert_eq!(ours.open(b"", &[]), None);
    }

    #[test]
    fn nonces_are_fresh() {
        let cipher = Cipher::from_base64(&generate_key_base64()).expect("a generated key");
        let first = cipher.seal(b"", b"same");
        let second = cipher.seal(b"", b"same");
        assert_ne!(first[..NONCE_BYTES], second[..NONCE_BYTES]);
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let short = Cipher::from_base64(&BASE64.encode([1u8; 10])).err().expect("refused");
        assert!(short.contains("got 10 bytes"), "{short}");
        let garbage = Cipher::from_base64("not base64!").err().expect("refused");
        assert!(garbage.contains("base64"), "{garbage}");
    }
}
