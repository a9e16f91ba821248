//! Secrets at rest: the key that encrypts stored credentials (and, if the
//! property asks for it, client addresses), and the key of IP hashing.
//!
//! Both derive (HKDF-SHA256) from `CLICKTRAIL_MASTER_KEY` when it is set,
//! else from a random key file generated on first start
//! (`<data_dir>/secret.key`, mode 0600). A check value stored in the
//! database makes a start with a different key fail loudly instead of
//! failing every decrypt later.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("could not read or create the key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the key file {0} is not 64 hex characters")]
    BadKeyFile(String),
    #[error("stored secret cannot be decrypted (was the master key or key file changed?)")]
    Decrypt,
    #[error(
        "the encryption key differs from the one this database was set up with: restore the previous \
         CLICKTRAIL_MASTER_KEY (or {key_file}), or stored credentials cannot be read"
    )]
    WrongKey { key_file: String },
}

/// The server's derived keys.
#[derive(Clone)]
pub struct Keyring {
    aead: XChaCha20Poly1305,
    ip_key: [u8; 32],
    collect_key: [u8; 32],
    token_key: [u8; 32],
    check: String,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring(***)")
    }
}

const VERSION_PREFIX: &str = "v1.";

impl Keyring {
    /// From the master key, or else the key file under `data_dir`.
    pub fn load(master_key: Option<&str>, data_dir: &Path) -> Result<Keyring, CryptoError> {
        let ikm: Vec<u8> = match master_key {
            Some(k) => k.as_bytes().to_vec(),
            None => read_or_create_key_file(&data_dir.join("secret.key"))?,
        };
        Ok(Self::from_ikm(&ikm))
    }

    pub fn from_ikm(ikm: &[u8]) -> Keyring {
        let hk = Hkdf::<Sha256>::new(Some(b"clicktrail/v1"), ikm);
        let mut aead_key = [0u8; 32];
        let mut ip_key = [0u8; 32];
        let mut collect_key = [0u8; 32];
        let mut token_key = [0u8; 32];
        let mut check = [0u8; 16];
        // Lengths are fixed and valid for SHA-256's HKDF.
        let _ = hk.expand(b"credentials", &mut aead_key);
        let _ = hk.expand(b"ip-hash", &mut ip_key);
        let _ = hk.expand(b"collect-server", &mut collect_key);
        let _ = hk.expand(b"postback-token", &mut token_key);
        let _ = hk.expand(b"key-check", &mut check);
        Keyring {
            aead: XChaCha20Poly1305::new(&aead_key.into()),
            ip_key,
            collect_key,
            token_key,
            check: hex::encode(check),
        }
    }

    /// A value that identifies the key without revealing it.
    pub fn check_value(&self) -> &str {
        &self.check
    }

    /// Encrypts with a random 192-bit nonce: `v1.<base64url(nonce|ct)>`.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        // Encryption with a valid key and nonce cannot fail for in-memory
        // buffers; an empty ciphertext would only fail to decrypt later.
        let ct = self
            .aead
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{VERSION_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<Vec<u8>, CryptoError> {
        let b64 = stored
            .strip_prefix(VERSION_PREFIX)
            .ok_or(CryptoError::Decrypt)?;
        let raw = URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|_| CryptoError::Decrypt)?;
        if raw.len() < 24 + 16 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ct) = raw.split_at(24);
        self.aead
            .decrypt(XNonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Decrypt)
    }

    pub fn encrypt_json(&self, v: &serde_json::Value) -> String {
        self.encrypt(v.to_string().as_bytes())
    }

    pub fn decrypt_json(&self, stored: &str) -> Result<serde_json::Value, CryptoError> {
        let bytes = self.decrypt(stored)?;
        serde_json::from_slice(&bytes).map_err(|_| CryptoError::Decrypt)
    }

    /// Keyed hash of an address: stable per server, not reversible without
    /// the key.
    pub fn hash_ip(&self, ip: &std::net::IpAddr) -> String {
        let mac = hmac(&self.ip_key, ip.to_string().as_bytes());
        format!("h:{}", hex::encode(&mac[..12]))
    }

    /// Keyed hash of a postback token, what postbacks are looked up by
    /// (the token itself is stored encrypted): without the key, a copy of
    /// the database yields no token that works.
    pub fn postback_token_hash(&self, token: &str) -> String {
        format!(
            "pt:{}",
            hex::encode(hmac(&self.token_key, token.as_bytes()))
        )
    }
}

impl Keyring {
    /// A property's secret for signing server-side collector requests
    /// (`POST /collect/server`): derived from the server's key, the
    /// property id and `version` (raising the version changes it), so
    /// nothing more is stored.
    pub fn collect_secret(&self, property_id: &str, version: u32) -> String {
        let mac = hmac(
            &self.collect_key,
            format!("{property_id}:{version}").as_bytes(),
        );
        format!("cts_{}", hex::encode(mac))
    }
}

/// HMAC-SHA256 of `data` under a 32-byte derived key.
fn hmac(key: &[u8; 32], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot run.
        <Hmac<Sha256> as Mac>::new_from_slice(&[0u8; 32]).expect("fixed-size HMAC key")
    });
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Whether `signature` (hex, optionally prefixed `sha256=`) is the
/// HMAC-SHA256 of `{timestamp}.{body}` under `secret`, compared in
/// constant time.
pub fn verify_collect_signature(
    secret: &str,
    timestamp: &str,
    body: &[u8],
    signature: &str,
) -> bool {
    let sig = signature.trim();
    let sig = sig.strip_prefix("sha256=").unwrap_or(sig);
    let Ok(given) = hex::decode(sig) else {
        return false;
    };
    let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The key in the key file at `path` (64 hex characters), without
/// creating one: what [`Keyring::load`] reads when no master key is set
/// (`clicktrail backup` and `restore` check it against a database).
pub fn read_key_file(path: &Path) -> Result<Vec<u8>, CryptoError> {
    let s = std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFile {
        path: path.display().to_string(),
        source,
    })?;
    let bytes =
        hex::decode(s.trim()).map_err(|_| CryptoError::BadKeyFile(path.display().to_string()))?;
    if bytes.len() != 32 {
        return Err(CryptoError::BadKeyFile(path.display().to_string()));
    }
    Ok(bytes)
}

fn read_or_create_key_file(path: &Path) -> Result<Vec<u8>, CryptoError> {
    let err = |source| CryptoError::KeyFile {
        path: path.display().to_string(),
        source,
    };
    match read_key_file(path) {
        Ok(bytes) => Ok(bytes),
        Err(CryptoError::KeyFile { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                clicktrail_store::private_dir(dir).map_err(err)?;
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            write_private(path, hex::encode(key).as_bytes()).map_err(err)?;
            Ok(key.to_vec())
        }
        Err(e) => Err(e),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

/// Truncates an address for storage: IPv4 to /24, IPv6 to /48.
pub fn truncate_ip(ip: &std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0", o[0], o[1], o[2])
        }
        std::net::IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return truncate_ip(&std::net::IpAddr::V4(v4));
            }
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::", s[0], s[1], s[2])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let k = Keyring::from_ikm(b"a master key of some length");
        let c = k.encrypt(b"security-key-123");
        assert!(c.starts_with("v1."));
        assert_eq!(k.decrypt(&c).unwrap(), b"security-key-123");
        let other = Keyring::from_ikm(b"another master key entirely");
        assert!(other.decrypt(&c).is_err());
        let mut t = c.clone();
        t.pop();
        assert!(k.decrypt(&t).is_err());
        assert_ne!(k.encrypt(b"x"), k.encrypt(b"x"), "nonces are random");
        assert_ne!(k.check_value(), other.check_value());
    }

    #[test]
    fn ip_forms() {
        let v4: std::net::IpAddr = "203.0.113.77".parse().unwrap();
        assert_eq!(truncate_ip(&v4), "203.0.113.0");
        let v6: std::net::IpAddr = "2001:db8:abcd:12::1".parse().unwrap();
        assert_eq!(truncate_ip(&v6), "2001:db8:abcd::");
        let k = Keyring::from_ikm(b"k");
        assert_eq!(k.hash_ip(&v4), k.hash_ip(&v4));
        assert!(!k.hash_ip(&v4).contains("203"));
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = std::env::temp_dir().join(format!("ct-key-{}", uuid::Uuid::new_v4()));
        let a = Keyring::load(None, &dir).unwrap();
        let b = Keyring::load(None, &dir).unwrap();
        assert_eq!(a.check_value(), b.check_value());
        let _ = std::fs::remove_dir_all(dir);
    }
}
