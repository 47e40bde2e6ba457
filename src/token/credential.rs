//! The app's credential, prepared once: a client secret, a certificate whose RSA key signs a
//! fresh client assertion (a JWT) for every token request, or a workload identity token file whose
//! content is the assertion.
//!
//! An assertion per request rather than MSAL's cached one: token requests are rare (one per
//! tenant per half token lifetime), and a fresh assertion can never be used past its `exp`. For
//! the same reason the federated token file is read for every request: the kubelet rotates it
//! (the Azure SDKs re-read it at least every 10 minutes), and reading a small file once per token
//! request is cheaper than any cache that could serve a stale one.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::RsaKeyPair;
use secrecy::{ExposeSecret, SecretString};

use super::error::{CredentialError, TokenInitError};
use crate::config::{CertificateCredential, Credential, KeyFormat};

/// `client_assertion_type` for a JWT assertion (RFC 7523).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid. Entra accepts at most 10 minutes; the request is sent at once.
const ASSERTION_LIFETIME_SECS: u64 = 5 * 60;

/// The credential, ready to use on every token request.
pub(crate) enum PreparedCredential {
    /// `client_secret`.
    Secret(SecretString),
    /// A certificate: `client_assertion` signed with its key (boxed: a parsed RSA key is large).
    Certificate(Box<CertificateSigner>),
    /// Workload identity: `client_assertion` is the content of this file, read per request.
    Federated(PathBuf),
}

impl fmt::Debug for PreparedCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreparedCredential::Secret(_) => f.write_str("Secret([redacted])"),
            PreparedCredential::Certificate(c) => c.fmt(f),
            PreparedCredential::Federated(path) => f.debug_tuple("Federated").field(path).finish(),
        }
    }
}

/// The form fields that prove the app's identity in one token request.
pub(crate) enum ClientAuth {
    /// `client_secret=...`
    Secret(SecretString),
    /// `client_assertion_type=...&client_assertion=...`
    Assertion(SecretString),
}

impl PreparedCredential {
    /// Parse the key once, so a bad key fails at start rather than on the first request.
    pub(crate) fn new(credential: &Credential) -> Result<Self, TokenInitError> {
        match credential {
            Credential::Secret(s) => Ok(PreparedCredential::Secret(s.clone())),
            Credential::Certificate(c) => Ok(PreparedCredential::Certificate(Box::new(
                CertificateSigner::new(c)?,
            ))),
            Credential::Federated(f) => Ok(PreparedCredential::Federated(f.path.clone())),
        }
    }

    /// The client authentication for one request to `token_url` (the assertion's `aud`).
    pub(crate) async fn client_auth(
        &self,
        client_id: &str,
        token_url: &str,
    ) -> Result<ClientAuth, CredentialError> {
        match self {
            PreparedCredential::Secret(s) => Ok(ClientAuth::Secret(s.clone())),
            PreparedCredential::Certificate(c) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                c.assertion(client_id, token_url, now)
                    .map(ClientAuth::Assertion)
            }
            PreparedCredential::Federated(path) => {
                read_federated_token(path).await.map(ClientAuth::Assertion)
            }
        }
    }
}

/// The current content of a workload identity token file, trimmed (kubelet writes none, but a
/// hand-made file often ends in a newline). Errors name the file, never its content.
pub(crate) async fn read_federated_token(path: &Path) -> Result<SecretString, CredentialError> {
    let failed = |reason: String| CredentialError::FederatedTokenFile {
        path: path.display().to_string(),
        reason,
    };
    // tokio's read runs on the blocking pool: a slow volume must not stall a runtime worker.
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".to_owned()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(failed("the file is empty".to_owned()));
    }
    Ok(SecretString::from(token.to_owned()))
}

/// Signs client assertions with the certificate's RSA key.
pub(crate) struct CertificateSigner {
    key: RsaKeyPair,
    /// base64url SHA-256 of the DER certificate: how Entra finds the uploaded certificate.
    x5t_s256: String,
    rng: SystemRandom,
}

impl fmt::Debug for CertificateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSigner")
            .field("x5t#S256", &self.x5t_s256)
            .finish_non_exhaustive()
    }
}

impl CertificateSigner {
    pub(crate) fn new(c: &CertificateCredential) -> Result<Self, TokenInitError> {
        let der = c.key_der.expose_secret();
        let key = match c.key_format {
            KeyFormat::Pkcs8 => RsaKeyPair::from_pkcs8(der),
            KeyFormat::Pkcs1 => RsaKeyPair::from_der(der),
        }
        .map_err(|reason| TokenInitError::Key {
            path: c.key_path.display().to_string(),
            reason,
        })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &c.cert_der);
        Ok(CertificateSigner {
            key,
            x5t_s256: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            rng: SystemRandom::new(),
        })
    }

    /// A signed assertion: PS256, `aud` = the token endpoint, `iss` = `sub` = the client id,
    /// valid from `now` (seconds since the epoch) for a few minutes.
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: u64,
    ) -> Result<SecretString, CredentialError> {
        let mut id = [0u8; 16];
        self.rng
            .fill(&mut id)
            .map_err(|_| CredentialError::Random)?;
        let jti: String = id.iter().map(|b| format!("{b:02x}")).collect();
        let header = serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.x5t_s256});
        let claims = serde_json::json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": jti,
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &ring::signature::RSA_PSS_SHA256,
                &self.rng,
                signing_input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| CredentialError::Sign)?;
        Ok(SecretString::from(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::token::{ErrorClass, TokenError};
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    use secrecy::SecretBox;
    use std::sync::{Arc, OnceLock};

    /// One 2048-bit key for all tests: generating it is the slow part.
    fn test_key() -> &'static rsa::RsaPrivateKey {
        static KEY: OnceLock<rsa::RsaPrivateKey> = OnceLock::new();
        KEY.get_or_init(|| {
            rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("rsa keygen")
        })
    }

    fn cert(format: KeyFormat) -> CertificateCredential {
        let der = match format {
            KeyFormat::Pkcs8 => test_key().to_pkcs8_der().unwrap().as_bytes().to_vec(),
            KeyFormat::Pkcs1 => test_key().to_pkcs1_der().unwrap().as_bytes().to_vec(),
        };
        CertificateCredential {
            cert_der: b"not really a certificate".to_vec(),
            key_der: Arc::new(SecretBox::new(Box::new(der))),
            key_format: format,
            cert_path: "app.pem".into(),
            key_path: "app-key.pem".into(),
        }
    }

    fn b64json(part: &str) -> serde_json::Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn assertion_is_a_verifiable_ps256_jwt() {
        for format in [KeyFormat::Pkcs8, KeyFormat::Pkcs1] {
            let signer = CertificateSigner::new(&cert(format)).unwrap();
            let url = "https://login.microsoftonline.com/2222/oauth2/v2.0/token";
            let jwt = signer.assertion("1111", url, 1_700_000_000).unwrap();
            let jwt = jwt.expose_secret();
            let parts: Vec<&str> = jwt.split('.').collect();
            assert_eq!(parts.len(), 3);

            let header = b64json(parts[0]);
            assert_eq!(header["alg"], "PS256");
            assert_eq!(header["typ"], "JWT");
            let thumb = ring::digest::digest(&ring::digest::SHA256, b"not really a certificate");
            assert_eq!(header["x5t#S256"], URL_SAFE_NO_PAD.encode(thumb.as_ref()));

            let claims = b64json(parts[1]);
            assert_eq!(claims["aud"], url);
            assert_eq!(claims["iss"], "1111");
            assert_eq!(claims["sub"], "1111");
            assert_eq!(claims["nbf"], 1_700_000_000u64);
            assert_eq!(claims["iat"], 1_700_000_000u64);
            let exp = claims["exp"].as_u64().unwrap();
            assert!(exp > 1_700_000_000 && exp <= 1_700_000_000 + 600);
            assert_eq!(claims["jti"].as_str().unwrap().len(), 32);

            let public = signer.key.public().as_ref().to_vec();
            let verifier = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PSS_2048_8192_SHA256,
                public,
            );
            let signed = format!("{}.{}", parts[0], parts[1]);
            verifier
                .verify(
                    signed.as_bytes(),
                    &URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
                )
                .expect("signature verifies");
        }
    }

    #[test]
    fn assertions_are_unique() {
        let signer = CertificateSigner::new(&cert(KeyFormat::Pkcs8)).unwrap();
        let a = signer.assertion("1111", "aud", 1).unwrap();
        let b = signer.assertion("1111", "aud", 1).unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
    }

    /// The assertion a credential sends, or its error's message.
    async fn assertion_of(credential: &PreparedCredential) -> Result<String, String> {
        match credential
            .client_auth(
                "1111",
                "https://login.microsoftonline.com/t/oauth2/v2.0/token",
            )
            .await
        {
            Ok(ClientAuth::Assertion(a)) => Ok(a.expose_secret().to_owned()),
            Ok(ClientAuth::Secret(_)) => Err("a secret was sent".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[tokio::test]
    async fn federated_token_file_is_read_for_every_request() {
        let dir = std::env::temp_dir().join(format!(
            "defender-proxy-federated-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        let credential =
            PreparedCredential::new(&Credential::Federated(crate::config::FederatedCredential {
                path: path.clone(),
            }))
            .unwrap();
        assert_eq!(format!("{credential:?}"), format!("Federated({path:?})"));

        // Missing: the message names the file.
        let err = assertion_of(&credential).await.unwrap_err();
        assert!(err.contains(&path.display().to_string()), "{err}");

        std::fs::write(&path, "first.jwt.sig\n").unwrap();
        assert_eq!(assertion_of(&credential).await.unwrap(), "first.jwt.sig");
        // Rotated by the kubelet: the next request sends the new content.
        std::fs::write(&path, "second.jwt.sig").unwrap();
        assert_eq!(assertion_of(&credential).await.unwrap(), "second.jwt.sig");

        // Empty: a credential error that names the file and never quotes content.
        std::fs::write(&path, " \n").unwrap();
        let err = assertion_of(&credential).await.unwrap_err();
        assert!(err.contains("is empty") && err.contains("token"), "{err}");
        let e = TokenError::from(CredentialError::FederatedTokenFile {
            path: "p".into(),
            reason: "r".into(),
        });
        assert_eq!(e.class(), ErrorClass::Credential);

        std::fs::write(&path, [0xff, 0xfe, b's', b'3']).unwrap();
        let err = assertion_of(&credential).await.unwrap_err();
        assert!(err.contains("not UTF-8") && !err.contains("s3"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bad_key_fails_at_start_and_debug_redacts() {
        let mut c = cert(KeyFormat::Pkcs8);
        c.key_der = Arc::new(SecretBox::new(Box::new(vec![1, 2, 3])));
        let err = CertificateSigner::new(&c).unwrap_err();
        assert!(err.to_string().contains("app-key.pem"), "{err}");

        let secret =
            PreparedCredential::new(&Credential::Secret(SecretString::from("hunter2"))).unwrap();
        assert!(!format!("{secret:?}").contains("hunter2"));
    }
}
