//! Checking that a request comes from the git server: GitHub's and the generic receiver's HMAC-SHA256
//! of the body, GitLab's shared token. Every comparison is constant-time.
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Checks `header` (`sha256=<hex>`, as in `X-Hub-Signature-256`) against the HMAC-SHA256 of `body`.
pub(super) fn check_hmac(secret: &[u8], body: &[u8], header: Option<&str>) -> Result<(), &'static str> {
    let header = header.ok_or("the signature header is missing")?;
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or("the signature must be `sha256=<hex>`")?;
    let given = hex::decode(hex_digest).map_err(|_| "the signature is not hex")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| "the secret is unusable")?;
    mac.update(body);
    mac.verify_slice(&given)
        .map_err(|_| "the signature does not match the body")
}

/// Checks a shared token (`X-Gitlab-Token`).
pub(super) fn check_token(secret: &[u8], given: Option<&str>) -> Result<(), &'static str> {
    let given = given.ok_or("the token header is missing")?;
    match bool::from(given.as_bytes().ct_eq(secret)) {
        true => Ok(()),
        false => Err("the token does not match"),
    }
}

/// `sha256=<hex>` of `body` under `secret`: what a sender puts in the signature header.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_signatures() {
        let good = sign(b"s3cret", b"body");
        assert_eq!(check_hmac(b"s3cret", b"body", Some(&good)), Ok(()));
        assert!(check_hmac(b"s3cret", b"b0dy", Some(&good)).is_err());
        assert!(check_hmac(b"other", b"body", Some(&good)).is_err());
        assert!(check_hmac(b"s3cret", b"body", None).unwrap_err().contains("missing"));
        assert!(check_hmac(b"s3cret", b"body", Some("sha1=abc")).is_err());
        assert!(check_hmac(b"s3cret", b"body", Some("sha256=zz")).is_err());
    }

    #[test]
    fn tokens() {
        assert_eq!(check_token(b"t", Some("t")), Ok(()));
        assert!(check_token(b"t", Some("u")).is_err());
        assert!(check_token(b"t", None).is_err());
    }
}
