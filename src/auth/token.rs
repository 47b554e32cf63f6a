//! Session tokens: HS256 JWTs that name a session row (`sid`), so a token dies with its session
//! (logout, password change) even before it expires.
//!
//! The signing secret is `JWT_SECRET`, or 64 random bytes generated once into
//! `$NEXUS_DATA_DIR/jwt.secret` (mode 0600). Several instances behind one proxy must share
//! `JWT_SECRET`.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::Secret;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user id, as text (JWT convention).
    pub sub: String,
    /// The session id; checked against the sessions table on every request.
    pub sid: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("JWT secret file {path}: {source}")]
    SecretFile { path: String, source: std::io::Error },
    #[error("JWT_SECRET is too short: give at least 32 characters")]
    WeakSecret,
}

/// The keys that sign and check tokens. One algorithm only (HS256): a token claiming any other,
/// including `none`, is refused.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(***)")
    }
}

impl TokenKeys {
    pub fn from_secret(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self { encoding: EncodingKey::from_secret(secret), decoding: DecodingKey::from_secret(secret), validation }
    }

    /// `JWT_SECRET` when set, else the secret file in the data dir (created on first start).
    pub fn load(configured: Option<&Secret>, data_dir: &Path) -> Result<Self, TokenError> {
        if let Some(secret) = configured {
            if secret.expose().len() < 32 {
                return Err(TokenError::WeakSecret);
            }
            return Ok(Self::from_secret(secret.expose().as_bytes()));
        }
        let path = data_dir.join("jwt.secret");
        let io_err = |source| TokenError::SecretFile { path: path.display().to_string(), source };
        let secret = match std::fs::read_to_string(&path) {
            Ok(text) => B64.decode(text.trim()).ok().filter(|b| b.len() >= 32).ok_or_else(|| {
                io_err(std::io::Error::new(std::io::ErrorKind::InvalidData, "not 32+ bytes of base64; delete it"))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = vec![0u8; 64];
                rand::rng().fill_bytes(&mut bytes);
                crate::secrets::write_private_file(&path, B64.encode(&bytes).as_bytes()).map_err(io_err)?;
                bytes
            }
            Err(e) => return Err(io_err(e)),
        };
        Ok(Self::from_secret(&secret))
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
    }

    /// The claims of a well-signed, unexpired token.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok().map(|data| data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_foreign_keys() {
        let keys = TokenKeys::from_secret(&[7u8; 32]);
        let now = crate::store::now_ms() / 1000;
        let claims = Claims { sub: "1".into(), sid: "s".into(), iat: now, exp: now + 60 };
        let token = keys.sign(&claims).unwrap();
        assert_eq!(keys.verify(&token), Some(claims.clone()));
        assert_eq!(TokenKeys::from_secret(&[8u8; 32]).verify(&token), None, "other key");
        let expired = keys.sign(&Claims { exp: now - 600, ..claims }).unwrap();
        assert_eq!(keys.verify(&expired), None);
        assert_eq!(keys.verify("not.a.token"), None);
    }

    #[test]
    fn secret_file_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        TokenKeys::load(None, dir.path()).unwrap();
        let first = std::fs::read(dir.path().join("jwt.secret")).unwrap();
        TokenKeys::load(None, dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("jwt.secret")).unwrap(), first);
        assert!(matches!(TokenKeys::load(Some(&Secret::new("short")), dir.path()), Err(TokenError::WeakSecret)));
    }
}
