//! Signed artifact URLs: HMAC-SHA256 over the URL path and an expiry time, and where the key lives.
//!
//! The key must be the same for every replica and survive restarts, or URLs handed to Pods that are still
//! starting stop working: in a cluster it lives in a Secret, in `cdkube dev` in a file.
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use sha2::Sha256;

use super::error::{Error, SignatureError};

/// The name of the signing key Secret in the operator's namespace, unless configured otherwise.
pub const DEFAULT_KEY_SECRET: &str = "cdkube-artifact-signing-key";
/// The data key of the signing key in its Secret.
pub const SIGNING_KEY_FIELD: &str = "signing-key";
/// Shorter keys are refused: HMAC-SHA256 is only as strong as its key.
const MIN_KEY_LEN: usize = 32;
/// The length of generated keys.
const GENERATED_KEY_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies artifact URLs with an HMAC-SHA256 key. Cheap to clone. `Debug` hides the key.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").field("key", &"<redacted>").finish()
    }
}

impl Signer {
    /// A signer with `key`, which must be at least 32 bytes.
    pub fn new(key: Vec<u8>) -> Result<Signer, Error> {
        if key.len() < MIN_KEY_LEN {
            return Err(Error::InvalidKey(format!(
                "{} bytes, at least {MIN_KEY_LEN} are needed",
                key.len()
            )));
        }
        Ok(Signer { key })
    }

    /// A signer with a fresh random 32-byte key.
    pub fn generate() -> Signer {
        let mut key = vec![0u8; GENERATED_KEY_LEN];
        getrandom::fill(&mut key).expect("the operating system's random number generator is available");
        Signer { key }
    }

    /// The key bytes (to store them).
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The hex HMAC-SHA256 of `path`, a newline and `expires` (unix seconds).
    pub fn sign(&self, path: &str, expires: u64) -> String {
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// Check `signature` for `path` and `expires` at time `now` (unix seconds). The signature is compared
    /// in constant time; an expired URL is reported only once its signature is known to be genuine.
    pub fn verify(&self, path: &str, expires: u64, signature: &str, now: u64) -> Result<(), SignatureError> {
        let bytes = hex::decode(signature).map_err(|_| SignatureError::Malformed)?;
        if bytes.len() != 32 {
            return Err(SignatureError::Malformed);
        }
        self.mac(path, expires)
            .verify_slice(&bytes)
            .map_err(|_| SignatureError::Mismatch)?;
        if now >= expires {
            return Err(SignatureError::Expired { expires, now });
        }
        Ok(())
    }

    /// `{base_url}{path}?expires=…&signature=…`, valid for `ttl` from now. `path` starts with `/` (see
    /// [`artifact_path`](super::artifact_path)); a trailing `/` of `base_url` is dropped.
    pub fn signed_url(&self, base_url: &str, path: &str, ttl: Duration) -> String {
        let expires = unix_now().saturating_add(ttl.as_secs().max(1));
        let signature = self.sign(path, expires);
        format!(
            "{}{path}?expires={expires}&signature={signature}",
            base_url.trim_end_matches('/')
        )
    }

    fn mac(&self, path: &str, expires: u64) -> HmacSha256 {
        // HMAC takes keys of any length; new() enforced the minimum.
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A key stored as text is hex (what this module writes); anything else is taken as raw bytes.
fn decode_key(bytes: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(bytes).map(str::trim).unwrap_or("");
    match hex::decode(text) {
        Ok(key) if !text.is_empty() => key,
        _ => bytes.to_vec(),
    }
}

/// The signer whose key is in file `path` (raw bytes, or hex), creating the file (0600, hex) with a fresh
/// key if it does not exist. For `cdkube dev`, where there is no Secret.
pub fn load_or_create_key_file(path: &Path) -> Result<Signer, Error> {
    match std::fs::read(path) {
        Ok(bytes) => return Signer::new(decode_key(&bytes)).map_err(|e| in_file(e, path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("read the signing key", path, e)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io("create the directory", parent, e))?;
    }
    let signer = Signer::generate();
    // create_new: if another process created it meanwhile, its key wins and is read back.
    match std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            let text = format!("{}\n", hex::encode(signer.key()));
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("write the signing key", path, e))?;
            Ok(signer)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create_key_file(path),
        Err(e) => Err(Error::io("create the signing key", path, e)),
    }
}

fn in_file(error: Error, path: &Path) -> Error {
    match error {
        Error::InvalidKey(why) => Error::InvalidKey(format!("{}: {why}", path.display())),
        other => other,
    }
}

/// The signer whose key is in Secret `namespace/name` (data key `signing-key`), creating the Secret with a
/// fresh key if it does not exist. When replicas race to create it, the loser reads the winner's key, so
/// every replica signs with the same key and URLs survive restarts.
pub async fn load_or_create_key_secret(client: kube::Client, namespace: &str, name: &str) -> Result<Signer, Error> {
    let api: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    let kube_error = |source: kube::Error| Error::KeySecret {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source: Box::new(source),
    };
    if let Some(secret) = api.get_opt(name).await.map_err(kube_error)? {
        return signer_from_secret(&secret, namespace, name);
    }
    let signer = Signer::generate();
    match api.create(&PostParams::default(), &key_secret(name, &signer)).await {
        Ok(_) => Ok(signer),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            let secret = api.get(name).await.map_err(kube_error)?;
            signer_from_secret(&secret, namespace, name)
        }
        Err(e) => Err(kube_error(e)),
    }
}

fn key_secret(name: &str, signer: &Signer) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "cdkube".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            SIGNING_KEY_FIELD.to_owned(),
            ByteString(signer.key().to_vec()),
        )])),
        ..Secret::default()
    }
}

fn signer_from_secret(secret: &Secret, namespace: &str, name: &str) -> Result<Signer, Error> {
    let key = secret
        .data
        .as_ref()
        .and_then(|data| data.get(SIGNING_KEY_FIELD))
        .map(|bytes| bytes.0.clone())
        .or_else(|| {
            let string_data = secret.string_data.as_ref()?;
            string_data.get(SIGNING_KEY_FIELD).map(|s| s.as_bytes().to_vec())
        })
        .ok_or_else(|| {
            Error::InvalidKey(format!(
                "Secret {namespace}/{name} has no {SIGNING_KEY_FIELD:?} key; delete it to have a new one made"
            ))
        })?;
    Signer::new(decode_key(&key)).map_err(|e| match e {
        Error::InvalidKey(why) => Error::InvalidKey(format!("Secret {namespace}/{name}: {why}")),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/artifacts/ns/p/abc/def.tar.gz";

    fn signer() -> Signer {
        Signer::new(vec![7; 32]).unwrap()
    }

    #[test]
    fn signatures_round_trip() {
        let s = signer();
        let sig = s.sign(PATH, 2000);
        assert_eq!(sig.len(), 64);
        assert_eq!(s.verify(PATH, 2000, &sig, 1000), Ok(()));
    }

    #[test]
    fn tampering_is_detected() {
        let s = signer();
        let sig = s.sign(PATH, 2000);
        assert_eq!(
            s.verify("/artifacts/ns/p/abc/other.tar.gz", 2000, &sig, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(s.verify(PATH, 3000, &sig, 1000), Err(SignatureError::Mismatch));
        let other = Signer::new(vec![8; 32]).unwrap();
        assert_eq!(other.verify(PATH, 2000, &sig, 1000), Err(SignatureError::Mismatch));
        assert_eq!(s.verify(PATH, 2000, "zz", 1000), Err(SignatureError::Malformed));
        assert_eq!(s.verify(PATH, 2000, &sig[..62], 1000), Err(SignatureError::Malformed));
        assert_eq!(s.verify(PATH, 2000, "", 1000), Err(SignatureError::Malformed));
    }

    #[test]
    fn expiry_is_checked_after_the_signature() {
        let s = signer();
        let sig = s.sign(PATH, 2000);
        assert_eq!(
            s.verify(PATH, 2000, &sig, 2000),
            Err(SignatureError::Expired {
                expires: 2000,
                now: 2000
            })
        );
        assert_eq!(s.verify(PATH, 2001, &sig, 3000), Err(SignatureError::Mismatch));
    }

    #[test]
    fn signed_urls_carry_expiry_and_signature() {
        let s = signer();
        let url = s.signed_url("http://cdkube:8080/", PATH, Duration::from_secs(60));
        let (base, query) = url.split_once('?').unwrap();
        assert_eq!(base, format!("http://cdkube:8080{PATH}"));
        let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let expires: u64 = params["expires"].parse().unwrap();
        assert!(expires >= unix_now() + 59 && expires <= unix_now() + 61);
        assert_eq!(s.verify(PATH, expires, &params["signature"], unix_now()), Ok(()));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(matches!(Signer::new(vec![1; 31]), Err(Error::InvalidKey(_))));
        assert_eq!(Signer::generate().key().len(), 32);
        assert!(!format!("{:?}", signer()).contains('7'));
    }

    #[test]
    fn key_files_are_created_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/signing-key");
        let first = load_or_create_key_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let second = load_or_create_key_file(&path).unwrap();
        assert_eq!(first.key(), second.key());

        let raw = dir.path().join("raw");
        std::fs::write(&raw, [0xffu8; 40]).unwrap();
        assert_eq!(load_or_create_key_file(&raw).unwrap().key(), &[0xffu8; 40][..]);
        let short = dir.path().join("short");
        std::fs::write(&short, "abcd\n").unwrap();
        let err = load_or_create_key_file(&short).unwrap_err().to_string();
        assert!(err.contains("short") && err.contains("at least 32"), "{err}");
    }
}
