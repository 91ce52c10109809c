//! The keyring file, as Consul keeps it in `<data_dir>/serf/local.keyring`: a JSON array of
//! base64 keys, primary first, mode 0600.
//!
//! Consul reads it at start in preference to `encrypt` (serf writes it after every keyring
//! change), so a node restarted with its original `encrypt` after a rotation still holds the
//! keys the pool uses now.
//!
//! Invariants: a file is written whole or not at all (temporary file, fsync, rename, fsync of
//! the directory); reading refuses a file above `KEYRING_FILE_BYTES_MAX`, an empty ring, more
//! than `KEYRING_KEYS_MAX` keys, a key twice, or any key that is not 16, 24 or 32 bytes.

use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use super::keyring::{Cipher, KEYRING_KEYS_MAX};

/// The largest keyring file read, in bytes (16 keys of 32 bytes take under 1 KiB).
const KEYRING_FILE_BYTES_MAX: usize = 64 * 1024;

/// The file's bytes for `ring`: Go's `json.Marshal` of the base64 keys.
pub(super) fn encode(ring: &[Cipher]) -> Vec<u8> {
    let keys: Vec<String> = ring.iter().map(Cipher::key_base64).collect();
    serde_json::to_vec(&keys).expect("a list of strings encodes")
}

/// The ring a file holds, or why it is refused (a sentence naming no key).
pub(super) fn decode(bytes: &[u8]) -> Result<Vec<Cipher>, String> {
    let keys: Vec<String> = serde_json::from_slice(bytes).map_err(|error| format!("not a JSON array of keys: {error}"))?;
    if keys.is_empty() {
        return Err("no keys present in keyring".to_owned());
    }
    if keys.len() > KEYRING_KEYS_MAX {
        return Err(format!("{} keys, at most {KEYRING_KEYS_MAX} are allowed", keys.len()));
    }
    let mut ring: Vec<Cipher> = Vec::with_capacity(keys.len());
    for (position, key) in keys.iter().enumerate() {
        let cipher = Cipher::from_base64(key).map_err(|reason| format!("key {}: {reason}", position + 1))?;
        if ring.iter().any(|installed| installed.same_key(&cipher)) {
            return Err(format!("key {} is listed twice", position + 1));
        }
        ring.push(cipher);
    }
    Ok(ring)
}

/// The ring saved at `path`; `None` when there is no file.
pub(super) fn read(path: &Path) -> Result<Option<Vec<Cipher>>, String> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let mut bytes = Vec::new();
    file.take(KEYRING_FILE_BYTES_MAX as u64 + 1).read_to_end(&mut bytes).map_err(|error| format!("{}: {error}", path.display()))?;
    if bytes.len() > KEYRING_FILE_BYTES_MAX {
        return Err(format!("{}: larger than {KEYRING_FILE_BYTES_MAX} bytes", path.display()));
    }
    decode(&bytes).map(Some).map_err(|reason| format!("{}: {reason}", path.display()))
}

/// Saves `ring` at `path` whole: its directory made 0700 if missing, a temporary file 0600
/// written and synced, renamed over the old file, and the directory synced.
pub(super) fn write(path: &Path, ring: &[Cipher]) -> io::Result<()> {
    let directory = path.parent().ok_or_else(|| io::Error::other("the keyring file has no directory"))?;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(directory)?;
    let mut temporary_name = path.file_name().unwrap_or_default().to_os_string();
    temporary_name.push(".tmp");
    let temporary = directory.join(temporary_name);
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temporary)?;
    file.write_all(&encode(ring))?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn ring(bytes: &[u8]) -> Vec<Cipher> {
        bytes.iter().map(|byte| Cipher::from_key_bytes(&[*byte; 32]).expect("a key")).collect()
    }

    #[test]
    fn the_file_is_a_json_array_of_base64_keys_primary_first() {
        let encoded = encode(&ring(&[1, 2]));
        let expected = format!(r#"["{}","{}"]"#, ring(&[1])[0].key_base64(), ring(&[2])[0].key_base64());
        assert_eq!(String::from_utf8(encoded.clone()).expect("utf-8"), expected);
        let decoded = decode(&encoded).expect("decodes");
        assert_eq!(decoded.iter().map(Cipher::key_base64).collect::<Vec<_>>(), ring(&[1, 2]).iter().map(Cipher::key_base64).collect::<Vec<_>>());
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let one = ring(&[1])[0].key_base64();
        let cases = [
            ("{}", "not a JSON array"),
            ("[]", "no keys present"),
            (r#"["not base64!"]"#, "key 1: failed to decode"),
            (r#"["AAAA"]"#, "key 1: key size must be"),
        ];
        for (text, reason) in cases {
            let refused = decode(text.as_bytes()).err().expect("refused");
            assert!(refused.contains(reason), "{text}: {refused}");
        }
        let twice = format!(r#"["{one}","{one}"]"#);
        assert!(decode(twice.as_bytes()).err().expect("refused").contains("twice"));
        let many: Vec<String> = (0..=KEYRING_KEYS_MAX as u8).map(|byte| ring(&[byte])[0].key_base64()).collect();
        let many = serde_json::to_vec(&many).expect("encodes");
        assert!(decode(&many).err().expect("refused").contains("at most"));
    }

    #[test]
    fn a_written_file_is_private_and_reads_back() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("serf").join("local.keyring");
        assert_eq!(read(&path).map(|ring| ring.is_none()), Ok(true), "no file yet");
        write(&path, &ring(&[3, 4])).expect("written");
        write(&path, &ring(&[4])).expect("rewritten");
        let mode = std::fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let directory_mode = std::fs::metadata(path.parent().expect("parent")).expect("metadata").permissions().mode();
        assert_eq!(directory_mode & 0o777, 0o700);
        let saved = read(&path).expect("readable").expect("present");
        assert_eq!(saved.iter().map(Cipher::key_base64).collect::<Vec<_>>(), [ring(&[4])[0].key_base64()]);
        assert!(!dir.path().join("serf").join("local.keyring.tmp").exists());
    }
}
