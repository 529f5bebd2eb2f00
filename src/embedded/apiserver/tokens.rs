//! ServiceAccount tokens: JWTs with kube-apiserver's claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`,
//! `jti` and the private `kubernetes.io` claim), signed with a key kept in the state directory so
//! that tokens outlive a restart of the server (as `--service-account-signing-key-file` does).
//!
//! Deviation: kube-apiserver signs with an asymmetric key (RS256/ES256) and publishes the public
//! half at `/openid/v1/jwks`; tokens here are HS256 (HMAC-SHA256), which only this server can
//! verify, and no OIDC discovery is served.
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The issuer (`--service-account-issuer`) and the server's only audience (`--api-audiences`
/// defaults to the issuer).
pub(crate) const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How far `exp`, `nbf` and `iat` may be off (go-jose's default leeway, which kube uses).
const LEEWAY_SECS: i64 = 60;

/// The key file in the state directory.
const KEY_FILE: &str = "sa-signing.key";

const KEY_LEN: usize = 32;

/// Signs and verifies ServiceAccount tokens with one HMAC key.
pub(crate) struct Signer {
    key: Vec<u8>,
    kid: String,
}

/// The object a token is bound to (`boundObjectRef` of a TokenRequest).
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    /// `Pod` or `Secret`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: String,
}

impl Signer {
    /// Reads the key from `<state_dir>/sa-signing.key`, creating it (0600, random) when absent.
    pub(crate) fn load_or_create(state_dir: &Path) -> std::io::Result<Signer> {
        let path = state_dir.join(KEY_FILE);
        let key = match std::fs::read(&path) {
            Ok(k) if k.len() >= KEY_LEN => k,
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is shorter than {KEY_LEN} bytes", path.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = super::ids::random_bytes(KEY_LEN);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)?;
                f.write_all(&key)?;
                f.sync_all()?;
                key
            }
            Err(e) => return Err(e),
        };
        // The key id names the key without revealing it, as kube's kid is a hash of the public key.
        let kid = b64(&Sha256::digest(&key)[..16]);
        Ok(Signer { key, kid })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts any key length")
    }

    /// A signed JWT carrying `claims`.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "HS256", "kid": self.kid});
        let signing_input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", b64(&mac.finalize().into_bytes()))
    }

    /// The claims of a token whose signature is this key's, else `None`. Times are not checked here.
    pub(crate) fn verify(&self, token: &str) -> Option<Value> {
        // A bearer token is request data: bound its size before decoding anything.
        if token.len() > 16 * 1024 {
            return None;
        }
        let mut parts = token.split('.');
        let (header_b64, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let header: Value = serde_json::from_slice(&unb64(header_b64)?).ok()?;
        if header["alg"] != "HS256" {
            return None;
        }
        let mut mac = self.mac();
        mac.update(format!("{header_b64}.{payload}").as_bytes());
        mac.verify_slice(&unb64(signature)?).ok()?;
        let claims: Value = serde_json::from_slice(&unb64(payload)?).ok()?;
        claims.is_object().then_some(claims)
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text).ok()
}

/// The claims kube-apiserver puts in a token for ServiceAccount `sa` (the stored object), valid
/// from `now` (seconds since the epoch) for `expiration` seconds.
pub(crate) fn claims(sa: &Value, bound: Option<&Bound>, now: i64, expiration: i64, audiences: &[String]) -> Value {
    let ns = sa["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = sa["metadata"]["name"].as_str().unwrap_or_default();
    let mut private = json!({
        "namespace": ns,
        "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]},
    });
    if let Some(b) = bound {
        private[b.kind.to_lowercase()] = json!({"name": b.name, "uid": b.uid});
    }
    json!({
        "aud": audiences,
        "exp": now + expiration,
        "iat": now,
        "iss": ISSUER,
        "jti": super::ids::uuid(),
        "kubernetes.io": private,
        "nbf": now,
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    })
}

/// Whether the registered claims hold at `now`: our issuer, an audience of this server, and `exp`,
/// `nbf`, `iat` within the leeway.
pub(crate) fn valid_at(claims: &Value, now: i64) -> bool {
    let audience_ok = match &claims["aud"] {
        Value::String(a) => a == ISSUER,
        Value::Array(a) => a.iter().any(|x| x == ISSUER),
        _ => false,
    };
    let exp = claims["exp"].as_i64();
    let nbf = claims["nbf"].as_i64().unwrap_or(i64::MIN);
    let iat = claims["iat"].as_i64().unwrap_or(i64::MIN);
    claims["iss"] == ISSUER
        && audience_ok
        && exp.is_some_and(|e| now <= e.saturating_add(LEEWAY_SECS))
        && now.saturating_add(LEEWAY_SECS) >= nbf
        && now.saturating_add(LEEWAY_SECS) >= iat
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> (tempfile::TempDir, Signer) {
        let dir = tempfile::tempdir().unwrap();
        let s = Signer::load_or_create(dir.path()).unwrap();
        (dir, s)
    }

    #[test]
    fn signed_tokens_verify_and_tampering_is_detected() {
        let (dir, s) = signer();
        let sa = json!({"metadata": {"namespace": "ns", "name": "sa", "uid": "u1"}});
        let claims = claims(&sa, None, 1_000, 3600, &[ISSUER.into()]);
        assert_eq!(claims["sub"], "system:serviceaccount:ns:sa");
        let token = s.sign(&claims);
        assert_eq!(s.verify(&token), Some(claims.clone()));
        assert!(valid_at(&claims, 1_000) && valid_at(&claims, 4_600 + 60) && !valid_at(&claims, 4_661));
        // Another payload under the same signature, or a token of another key: refused.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = b64(br#"{"sub":"system:serviceaccount:ns:admin"}"#);
        parts[1] = &forged;
        assert_eq!(s.verify(&parts.join(".")), None);
        let (_other_dir, other) = signer();
        assert_eq!(other.verify(&token), None);
        // The key survives a restart: the same file gives the same verifier.
        let again = Signer::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&token).is_some());
        assert_eq!(s.verify("a.b"), None);
        assert_eq!(s.verify("not a token"), None);
    }

    #[test]
    fn audience_must_be_the_servers() {
        let sa = json!({"metadata": {"namespace": "ns", "name": "sa", "uid": "u1"}});
        assert!(!valid_at(&claims(&sa, None, 0, 600, &["vault".into()]), 0));
        let bound = Bound {
            kind: "Pod".into(),
            name: "p".into(),
            uid: "pu".into(),
        };
        let c = claims(&sa, Some(&bound), 0, 600, &[ISSUER.into()]);
        assert_eq!(c["kubernetes.io"]["pod"]["uid"], "pu");
    }
}
