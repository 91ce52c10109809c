//! The gossip keyring: AES-GCM keys from Consul's `encrypt` setting, and the pure operations
//! that rotate them (memberlist's `Keyring`: install, use, remove).
//!
//! A key is 16, 24 or 32 bytes (AES-128/192/256-GCM), given in base64 as Consul does. The
//! first key of the ring (the primary) encrypts; every key is tried to decrypt, so a pool can
//! rotate keys the way `consul keyring` does. Every sealed message gets a fresh random 12-byte
//! nonce, and the envelope's version byte is authenticated as associated data.
//!
//! Invariants: key bytes never reach a log or a `Debug` output; opening never panics on any
//! input; a ring built by these operations is never empty, never holds one key twice and never
//! holds more than `KEYRING_KEYS_MAX` keys.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand010::RngExt as _;

use super::keyring_ops::KeyringError;

/// The nonce that starts every sealed message, in bytes.
pub(super) const NONCE_BYTES: usize = 12;

/// The authentication tag that ends every sealed message, in bytes.
pub(super) const TAG_BYTES: usize = 16;

/// The most keys a ring holds (Consul rotates with two or three at a time).
pub(super) const KEYRING_KEYS_MAX: usize = 16;

/// AES-192-GCM with the standard 12-byte nonce (aes-gcm names only the 128 and 256 variants).
type Aes192Gcm = AesGcm<aes_gcm::aes::Aes192, U12>;

/// One AES-GCM key, in the size the operator chose, with its bytes (to compare, list and save).
#[derive(Clone)]
pub(super) struct Cipher {
    key: Box<[u8]>,
    aead: Aes,
}

#[derive(Clone)]
enum Aes {
    Aes128(Box<Aes128Gcm>),
    Aes192(Box<Aes192Gcm>),
    Aes256(Box<Aes256Gcm>),
}

impl Cipher {
    /// Builds the cipher for 16, 24 or 32 key bytes; `None` for any other length.
    pub(super) fn from_key_bytes(key: &[u8]) -> Option<Cipher> {
        let aead = match key.len() {
            16 => Aes128Gcm::new_from_slice(key).ok().map(|c| Aes::Aes128(Box::new(c))),
            24 => Aes192Gcm::new_from_slice(key).ok().map(|c| Aes::Aes192(Box::new(c))),
            32 => Aes256Gcm::new_from_slice(key).ok().map(|c| Aes::Aes256(Box::new(c))),
            _ => None,
        }?;
        Some(Cipher { key: key.into(), aead })
    }

    /// Decodes a base64 key as Consul's `encrypt` holds it.
    pub(super) fn from_base64(key_base64: &str) -> Result<Cipher, String> {
        let key = BASE64
            .decode(key_base64.trim())
            .map_err(|error| format!("failed to decode the key from base64: {error}"))?;
        Cipher::from_key_bytes(&key)
            .ok_or_else(|| format!("key size must be 16, 24 or 32 bytes, got {} bytes", key.len()))
    }

    /// The key in base64, as Consul lists and saves it.
    pub(super) fn key_base64(&self) -> String {
        BASE64.encode(&self.key)
    }

    /// The raw key bytes (for the keyring wire messages, which are themselves sealed).
    pub(super) fn key_bytes(&self) -> &[u8] {
        &self.key
    }

    /// Whether both hold the same key.
    pub(super) fn same_key(&self, other: &Cipher) -> bool {
        self.key == other.key
    }

    /// `nonce ‖ ciphertext ‖ tag` for `plaintext`, authenticating `associated`.
    pub(super) fn seal(&self, associated: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_BYTES] = rand010::rng().random();
        let nonce = Nonce::<U12>::from(nonce_bytes);
        let payload = Payload { msg: plaintext, aad: associated };
        let sealed = match &self.aead {
            Aes::Aes128(cipher) => cipher.encrypt(&nonce, payload),
            Aes::Aes192(cipher) => cipher.encrypt(&nonce, payload),
            Aes::Aes256(cipher) => cipher.encrypt(&nonce, payload),
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
        match &self.aead {
            Aes::Aes128(cipher) => cipher.decrypt(&nonce, payload).ok(),
            Aes::Aes192(cipher) => cipher.decrypt(&nonce, payload).ok(),
            Aes::Aes256(cipher) => cipher.decrypt(&nonce, payload).ok(),
        }
    }
}

/// memberlist's `AddKey`: `key` joins the ring after the others (the primary stays); a key
/// already installed changes nothing. Refused when the ring is full.
pub(super) fn install(ring: &[Cipher], key: &Cipher) -> Result<Vec<Cipher>, KeyringError> {
    if ring.iter().any(|installed| installed.same_key(key)) {
        return Ok(ring.to_vec());
    }
    if ring.len() >= KEYRING_KEYS_MAX {
        return Err(KeyringError::Full { limit: KEYRING_KEYS_MAX });
    }
    let mut changed = ring.to_vec();
    changed.push(key.clone());
    Ok(changed)
}

/// memberlist's `UseKey`: an installed `key` becomes the primary; the others keep their order.
pub(super) fn use_key(ring: &[Cipher], key: &Cipher) -> Result<Vec<Cipher>, KeyringError> {
    let position = ring.iter().position(|installed| installed.same_key(key)).ok_or(KeyringError::NotInstalled)?;
    let mut changed = ring.to_vec();
    let primary = changed.remove(position);
    changed.insert(0, primary);
    Ok(changed)
}

/// memberlist's `RemoveKey`: `key` leaves the ring; the primary may not; a key not installed
/// changes nothing.
pub(super) fn remove(ring: &[Cipher], key: &Cipher) -> Result<Vec<Cipher>, KeyringError> {
    if ring.first().is_some_and(|primary| primary.same_key(key)) {
        return Err(KeyringError::RemovePrimary);
    }
    Ok(ring.iter().filter(|installed| !installed.same_key(key)).cloned().collect())
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
    fn ring_operations_as_memberlist() {
        let [a, b, c] = [0u8, 1, 2].map(|byte| Cipher::from_key_bytes(&[byte; 32]).expect("a key"));
        let keys = |ring: &[Cipher]| ring.iter().map(|cipher| cipher.key_bytes()[0]).collect::<Vec<_>>();
        // install appends, keeps the primary, and is a no-op for a key already there.
        let ring = install(&[a.clone()], &b).expect("installed");
        assert_eq!(keys(&ring), [0, 1]);
        assert_eq!(keys(&install(&ring, &b).expect("no-op")), [0, 1]);
        assert_eq!(keys(&install(&ring, &a).expect("no-op")), [0, 1]);
        // use moves an installed key first; an unknown key is refused with memberlist's words.
        let ring = install(&ring, &c).expect("installed");
        assert_eq!(keys(&use_key(&ring, &c).expect("used")), [2, 0, 1]);
        assert_eq!(keys(&use_key(&ring, &a).expect("already primary")), [0, 1, 2]);
        let unknown = Cipher::from_key_bytes(&[9; 16]).expect("a key");
        let refused = use_key(&ring, &unknown).err().expect("refused");
        assert_eq!(refused.to_string(), "Requested key is not in the keyring");
        // remove drops a secondary, refuses the primary, ignores an absent key.
        assert_eq!(keys(&remove(&ring, &b).expect("removed")), [0, 2]);
        assert_eq!(keys(&remove(&ring, &unknown).expect("no-op")), [0, 1, 2]);
        let refused = remove(&ring, &a).err().expect("refused");
        assert_eq!(refused.to_string(), "Removing the primary key is not allowed");
    }

    #[test]
    fn a_ring_never_grows_past_its_limit() {
        let mut ring = vec![Cipher::from_key_bytes(&[0; 16]).expect("a key")];
        for byte in 1..KEYRING_KEYS_MAX {
            ring = install(&ring, &Cipher::from_key_bytes(&[byte as u8; 16]).expect("a key")).expect("room left");
        }
        assert_eq!(ring.len(), KEYRING_KEYS_MAX);
        let one_more = Cipher::from_key_bytes(&[200; 16]).expect("a key");
        assert!(matches!(install(&ring, &one_more), Err(KeyringError::Full { .. })));
        // Installing a key already there is still a no-op on a full ring.
        assert_eq!(install(&ring, &ring[3]).expect("no-op").len(), KEYRING_KEYS_MAX);
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let short = Cipher::from_base64(&BASE64.encode([1u8; 10])).err().expect("refused");
        assert!(short.contains("got 10 bytes"), "{short}");
        let garbage = Cipher::from_base64("not base64!").err().expect("refused");
        assert!(garbage.contains("base64"), "{garbage}");
    }
}
