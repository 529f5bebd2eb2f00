//! Credentials for a remote, built from a Kubernetes Secret's data map.
//!
//! Recognised keys: `username`+`password` (a token may be the password), `bearerToken`, `identity` (an
//! unencrypted ssh private key) with `known_hosts`, and `ca.crt` (PEM CA bundle for HTTPS). Values are
//! validated when the credentials are built, so a bad Secret is reported before any network call.
//! Nothing here ever prints a value: `Debug` shows which keys are set, never their content.
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::error::{Error, Result};

/// Secret key for the HTTP user name.
pub const USERNAME: &str = "username";
/// Secret key for the HTTP password (or token used as password).
pub const PASSWORD: &str = "password";
/// Secret key for an HTTP bearer token.
pub const BEARER_TOKEN: &str = "bearerToken";
/// Secret key for the ssh private key.
pub const IDENTITY: &str = "identity";
/// Secret key for the ssh `known_hosts` lines that pin the server's host key.
pub const KNOWN_HOSTS: &str = "known_hosts";
/// Secret key for the PEM CA bundle that signs the HTTPS server's certificate.
pub const CA_CERT: &str = "ca.crt";

/// Credentials for one remote. Cheap to clone; compare with [`Credentials::identity`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    username: Option<String>,
    password: Option<String>,
    bearer_token: Option<String>,
    identity: Option<String>,
    known_hosts: Option<String>,
    ca_cert: Option<String>,
}

impl Credentials {
    /// No credentials at all (public repositories).
    pub fn none() -> Self {
        Credentials::default()
    }

    /// Build and validate credentials from a Secret's `data` map (values already base64-decoded).
    /// Unknown keys are ignored, so one Secret can serve other tools too.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self> {
        let text = |key: &str| -> Result<Option<String>> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    .map(Some)
                    .map_err(|_| Error::invalid(format!("Secret key `{key}` is not valid UTF-8 text"))),
            }
        };
        let creds = Credentials {
            username: text(USERNAME)?.map(|s| s.trim_end_matches(['\r', '\n']).to_owned()),
            password: text(PASSWORD)?.map(|s| s.trim_end_matches(['\r', '\n']).to_owned()),
            bearer_token: text(BEARER_TOKEN)?.map(|s| s.trim().to_owned()),
            identity: text(IDENTITY)?,
            known_hosts: text(KNOWN_HOSTS)?,
            ca_cert: text(CA_CERT)?,
        };
        creds.validate()?;
        Ok(creds)
    }

    /// HTTP basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: Some(username.into()),
            password: Some(password.into()),
            ..Default::default()
        }
    }

    fn validate(&self) -> Result<()> {
        if self.password.is_some() && self.username.as_deref().is_none_or(str::is_empty) {
            return Err(Error::invalid(
                "Secret has `password` but no `username`; set `username` (any name works for token-as-password)",
            ));
        }
        if self.bearer_token.is_some() && (self.username.is_some() || self.password.is_some()) {
            return Err(Error::invalid(
                "Secret has both `bearerToken` and `username`/`password`; keep only one way to authenticate",
            ));
        }
        if self.bearer_token.as_deref() == Some("") {
            return Err(Error::invalid("Secret key `bearerToken` is empty"));
        }
        if let Some(token) = &self.bearer_token
            && token.chars().any(|c| c.is_control() || c == ' ')
        {
            return Err(Error::invalid(
                "Secret key `bearerToken` contains spaces or control characters",
            ));
        }
        if let Some(key) = &self.identity {
            validate_identity(key)?;
        }
        if let Some(lines) = &self.known_hosts {
            validate_known_hosts(lines)?;
        }
        if let Some(pem) = &self.ca_cert {
            validate_ca(pem)?;
        }
        Ok(())
    }

    /// Whether nothing is set.
    pub fn is_empty(&self) -> bool {
        *self == Credentials::default()
    }

    /// A stable, non-secret identity for these credentials: equal credentials give equal identities within
    /// this process, and the value reveals nothing about the secrets (it is keyed with a per-process random
    /// key, so it cannot be brute-forced offline). `"none"` when there are no credentials.
    pub fn identity(&self) -> String {
        if self.is_empty() {
            return "none".to_owned();
        }
        let mut hasher = Sha256::new();
        hasher.update(process_key());
        for field in [
            &self.username,
            &self.password,
            &self.bearer_token,
            &self.identity,
            &self.known_hosts,
            &self.ca_cert,
        ] {
            match field {
                Some(value) => {
                    hasher.update([1]);
                    hasher.update((value.len() as u64).to_le_bytes());
                    hasher.update(value.as_bytes());
                }
                None => hasher.update([0]),
            }
        }
        hex::encode(&hasher.finalize()[..8])
    }

    /// The HTTP basic user name and password, if set.
    pub(crate) fn basic_auth(&self) -> Option<(&str, &str)> {
        Some((self.username.as_deref()?, self.password.as_deref().unwrap_or("")))
    }

    /// The ssh user name, if set (used when the URL names no user).
    pub(crate) fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The bearer token, if set.
    pub(crate) fn bearer_token(&self) -> Option<&str> {
        self.bearer_token.as_deref()
    }

    /// The ssh private key, if set.
    pub(crate) fn ssh_identity(&self) -> Option<&str> {
        self.identity.as_deref()
    }

    /// The `known_hosts` lines, if set.
    pub(crate) fn known_hosts(&self) -> Option<&str> {
        self.known_hosts.as_deref()
    }

    /// The PEM CA bundle, if set.
    pub(crate) fn ca_cert(&self) -> Option<&str> {
        self.ca_cert.as_deref()
    }

    /// Every secret value, for redacting messages built from transport errors.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        [&self.password, &self.bearer_token, &self.identity]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Credentials")
            .field("username", &set(&self.username))
            .field("password", &set(&self.password))
            .field("bearer_token", &set(&self.bearer_token))
            .field("identity", &set(&self.identity))
            .field("known_hosts", &set(&self.known_hosts))
            .field("ca_cert", &set(&self.ca_cert))
            .finish()
    }
}

/// 32 random bytes drawn once per process, keying [`Credentials::identity`].
fn process_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        use std::hash::{BuildHasher, RandomState};
        let mut key = [0u8; 32];
        for (i, chunk) in key.chunks_mut(8).enumerate() {
            chunk.copy_from_slice(&RandomState::new().hash_one(i).to_le_bytes());
        }
        key
    })
}

/// Accept an unencrypted PEM or OpenSSH private key; say precisely what is wrong otherwise.
fn validate_identity(key: &str) -> Result<()> {
    let unreadable = |why: &str| {
        Error::invalid(format!(
            "Secret key `identity` is not a readable ssh private key: {why} (expected an unencrypted \
             `-----BEGIN OPENSSH PRIVATE KEY-----` block, as written by `ssh-keygen -N ''`)"
        ))
    };
    let trimmed = key.trim();
    let (Some(begin), Some(end)) = (trimmed.lines().next(), trimmed.lines().last()) else {
        return Err(unreadable("it is empty"));
    };
    if !(begin.starts_with("-----BEGIN ") && begin.ends_with("PRIVATE KEY-----")) {
        return Err(unreadable("no PEM `BEGIN … PRIVATE KEY` header"));
    }
    if !(end.starts_with("-----END ") && end.ends_with("PRIVATE KEY-----")) {
        return Err(unreadable("no PEM `END … PRIVATE KEY` footer"));
    }
    if trimmed.contains("ENCRYPTED") {
        return Err(unreadable("it is passphrase-protected"));
    }
    if begin == "-----BEGIN OPENSSH PRIVATE KEY-----" {
        let body: String = trimmed
            .lines()
            .skip(1)
            .take_while(|l| !l.starts_with("-----END"))
            .collect();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(body.trim())
            .map_err(|_| unreadable("its body is not base64"))?;
        let magic = b"openssh-key-v1\0";
        let Some(rest) = raw.strip_prefix(magic.as_slice()) else {
            return Err(unreadable("it is not in openssh-key-v1 format"));
        };
        let cipher = rest
            .get(..4)
            .map(|n| u32::from_be_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .and_then(|len| rest.get(4..4 + len));
        match cipher {
            Some(b"none") => {}
            Some(_) => return Err(unreadable("it is passphrase-protected")),
            None => return Err(unreadable("it is truncated")),
        }
    }
    Ok(())
}

/// Check every `known_hosts` line: `[marker] hosts key-type base64-key [comment]`.
fn validate_known_hosts(text: &str) -> Result<()> {
    let mut entries = 0;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_some_and(|f| f.starts_with('@')) {
            fields.remove(0);
        }
        let valid = fields.len() >= 3
            && is_key_type(fields[1])
            && base64::engine::general_purpose::STANDARD
                .decode(fields[2])
                .is_ok_and(|k| k.len() > 16);
        if !valid {
            return Err(Error::invalid(format!(
                "Secret key `known_hosts` line {} is not a known_hosts entry (expected `host key-type base64-key`, \
                 as printed by `ssh-keyscan`)",
                index + 1
            )));
        }
        entries += 1;
    }
    if entries == 0 {
        return Err(Error::invalid(
            "Secret key `known_hosts` has no entries; add the server's host key lines (`ssh-keyscan host`)",
        ));
    }
    Ok(())
}

fn is_key_type(field: &str) -> bool {
    ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"]
        .iter()
        .any(|p| field.starts_with(p))
}

/// Check that `pem` holds at least one certificate the HTTP client can load.
fn validate_ca(pem: &str) -> Result<()> {
    let bad = || {
        Error::invalid("Secret key `ca.crt` holds no readable PEM certificate (expected `-----BEGIN CERTIFICATE-----`)")
    };
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(bad());
    }
    match reqwest::Certificate::from_pem_bundle(pem.as_bytes()) {
        Ok(certs) if !certs.is_empty() => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn debug_never_shows_values() {
        let creds = Credentials::from_secret_data(&data(&[("username", "alice"), ("password", "hunter22")])).unwrap();
        let shown = format!("{creds:?}");
        assert!(!shown.contains("hunter22") && !shown.contains("alice"), "{shown}");
        assert!(shown.contains("password: \"<set>\""), "{shown}");
    }

    #[test]
    fn identity_is_stable_and_distinguishes() {
        let a = Credentials::basic("alice", "one");
        let b = Credentials::basic("alice", "two");
        assert_eq!(a.identity(), a.clone().identity());
        assert_ne!(a.identity(), b.identity());
        assert_eq!(Credentials::none().identity(), "none");
        assert!(!a.identity().contains("one"));
    }

    #[test]
    fn bad_secrets_are_explained() {
        let err = Credentials::from_secret_data(&data(&[("password", "x")])).unwrap_err();
        assert!(err.message().contains("no `username`"), "{err}");
        let err = Credentials::from_secret_data(&data(&[("identity", "not a key")])).unwrap_err();
        assert!(err.message().contains("not a readable ssh private key"), "{err}");
        let err = Credentials::from_secret_data(&data(&[("known_hosts", "garbage line\n")])).unwrap_err();
        assert!(err.message().contains("line 1"), "{err}");
        let err = Credentials::from_secret_data(&data(&[("ca.crt", "nope")])).unwrap_err();
        assert!(err.message().contains("ca.crt"), "{err}");
        let err = Credentials::from_secret_data(&data(&[("bearerToken", "t"), ("username", "u")])).unwrap_err();
        assert!(err.message().contains("only one way"), "{err}");
    }

    #[test]
    fn encrypted_openssh_key_is_rejected() {
        // openssh-key-v1 header with cipher "aes256-ctr".
        let mut raw = b"openssh-key-v1\0".to_vec();
        raw.extend(10u32.to_be_bytes());
        raw.extend(b"aes256-ctr");
        let body = base64::engine::general_purpose::STANDARD.encode(raw);
        let key = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{body}\n-----END OPENSSH PRIVATE KEY-----\n");
        let err = validate_identity(&key).unwrap_err();
        assert!(err.message().contains("passphrase-protected"), "{err}");
    }
}
