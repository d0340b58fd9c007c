//! Station passwords at rest: XChaCha20-Poly1305 envelope with a key from a file.
//!
//! Zabbix sends station credentials with every poll; the original stored them in clear text.
//! Here the password is sealed with a 256-bit key that lives outside the database (a file, ideally
//! a systemd credential via `LoadCredential=`), with the host id as associated data so a
//! ciphertext copied onto another host's row does not decrypt. A key id (first 8 bytes of the
//! key's SHA-256) is stored beside each ciphertext so a key change is detected, not mistaken for
//! corruption. Plaintext only ever lives in [`SecretString`], whose `Debug` is redacted.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Format version of a sealed password: 1 = XChaCha20-Poly1305, 24-byte nonce, 16-byte tag.
const SEALED_V1: u8 = 1;
const NONCE_LEN: usize = 24;

/// Errors about the key or a sealed value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The key file cannot be read.
    #[error(
        "cannot read the station-password key {path}: {reason} (create one with `appcataloga keygen {path}` and set secrets.key_file)"
    )]
    KeyUnreadable {
        /// Key file path.
        path: String,
        /// OS error.
        reason: String,
    },
    /// The key file does not hold 64 hex digits.
    #[error("the station-password key {path} is malformed: expected 64 hexadecimal digits")]
    KeyMalformed {
        /// Key file path.
        path: String,
    },
    /// A stored password was sealed with another key.
    #[error("the stored password was encrypted with key {stored}, but the configured key is {current}")]
    WrongKey {
        /// Key id on the row.
        stored: String,
        /// Key id of the loaded key.
        current: String,
    },
    /// The ciphertext is damaged or belongs to another host.
    #[error("the stored password cannot be decrypted (damaged, or sealed for another host)")]
    Corrupt,
    /// Writing a new key failed.
    #[error("cannot write a new key to {path}: {reason}")]
    KeyWrite {
        /// Target path.
        path: String,
        /// OS error.
        reason: String,
    },
}

/// The 256-bit key that seals station passwords.
pub struct StationKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for StationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StationKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A password sealed for one host, as stored in `HOST`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedPassword {
    /// `version || nonce || ciphertext+tag`.
    pub bytes: Vec<u8>,
    /// Id of the key that sealed it.
    pub key_id: String,
}

impl StationKey {
    /// Loads a key written by [`StationKey::generate_file`] (64 hex digits, whitespace ignored).
    ///
    /// # Errors
    /// [`SecretError::KeyUnreadable`] or [`SecretError::KeyMalformed`].
    pub fn load(path: &Path) -> Result<StationKey, SecretError> {
        let label = path.display().to_string();
        let text = fs::read_to_string(path)
            .map_err(|e| SecretError::KeyUnreadable { path: label.clone(), reason: e.to_string() })?;
        let hex_digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let raw = hex::decode(&hex_digits).map_err(|_| SecretError::KeyMalformed { path: label.clone() })?;
        let key: [u8; 32] = raw.try_into().map_err(|_| SecretError::KeyMalformed { path: label })?;
        Ok(StationKey::from_bytes(&key))
    }

    /// Builds a key from raw bytes.
    pub fn from_bytes(key: &[u8; 32]) -> StationKey {
        let digest = Sha256::digest(key);
        StationKey { cipher: XChaCha20Poly1305::new(key.into()), id: hex::encode(&digest[..8]) }
    }

    /// Writes a fresh random key to `path` (mode 0600, refusing to overwrite).
    ///
    /// # Errors
    /// [`SecretError::KeyWrite`] when the file exists or cannot be created.
    pub fn generate_file(path: &Path) -> Result<String, SecretError> {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| {
                SecretError::KeyWrite { path: path.display().to_string(), reason: e.to_string() }
            })?;
        writeln!(file, "{}", hex::encode(key.as_slice()))
            .and_then(|()| file.sync_all())
            .map_err(|e| SecretError::KeyWrite { path: path.display().to_string(), reason: e.to_string() })?;
        let key_bytes: [u8; 32] = key.into();
        Ok(StationKey::from_bytes(&key_bytes).id)
    }

    /// Short public identifier of this key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `password` for host `host_id`.
    pub fn seal(&self, host_id: i64, password: &SecretString) -> SealedPassword {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated_data(host_id);
        // Encryption with a valid key and nonce cannot fail for inputs this small.
        let ciphertext = self
            .cipher
            .encrypt(&nonce, Payload { msg: password.expose_secret().as_bytes(), aad: &aad })
            .unwrap_or_default();
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        bytes.push(SEALED_V1);
        bytes.extend_from_slice(nonce.as_slice());
        bytes.extend_from_slice(&ciphertext);
        SealedPassword { bytes, key_id: self.id.clone() }
    }

    /// Opens a password sealed by [`StationKey::seal`] for the same host.
    ///
    /// # Errors
    /// [`SecretError::WrongKey`] or [`SecretError::Corrupt`].
    pub fn open(&self, host_id: i64, sealed: &SealedPassword) -> Result<SecretString, SecretError> {
        if sealed.key_id != self.id {
            return Err(SecretError::WrongKey { stored: sealed.key_id.clone(), current: self.id.clone() });
        }
        let b = &sealed.bytes;
        if b.len() < 1 + NONCE_LEN + 16 || b[0] != SEALED_V1 {
            return Err(SecretError::Corrupt);
        }
        let nonce = XNonce::from_slice(&b[1..1 + NONCE_LEN]);
        let aad = associated_data(host_id);
        let plain = self
            .cipher
            .decrypt(nonce, Payload { msg: &b[1 + NONCE_LEN..], aad: &aad })
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain).map(SecretString::from).map_err(|_| SecretError::Corrupt)
    }
}

fn associated_data(host_id: i64) -> Vec<u8> {
    format!("appcataloga:host-password:v1:{host_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_binding() {
        let key = StationKey::from_bytes(&[7u8; 32]);
        let pw = SecretString::from("pass word with spaces ☃".to_string());
        let sealed = key.seal(10367, &pw);
        assert!(!sealed.bytes.windows(4).any(|w| w == b"pass"));
        assert_eq!(key.open(10367, &sealed).unwrap().expose_secret(), pw.expose_secret());
        assert!(matches!(key.open(10368, &sealed), Err(SecretError::Corrupt)));
        let other = StationKey::from_bytes(&[8u8; 32]);
        assert!(matches!(other.open(10367, &sealed), Err(SecretError::WrongKey { .. })));
        // Two seals of the same password differ (random nonce).
        assert_ne!(key.seal(1, &pw).bytes, key.seal(1, &pw).bytes);
    }

    #[test]
    fn keygen_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let id = StationKey::generate_file(&path).unwrap();
        let key = StationKey::load(&path).unwrap();
        assert_eq!(key.id(), id);
        assert!(StationKey::generate_file(&path).is_err(), "must not overwrite");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
