//! Password hashing and the password rules.
//!
//! Hashing is argon2id with **m = 19456 KiB (19 MiB), t = 2 iterations, p = 1 lane**, output 32
//! bytes, a random 16-byte salt — OWASP's first recommended argon2id setting. It costs about 30–60 ms
//! of one core per hash here (measured by `scripts/bench-api.sh`), slow enough to make offline
//! guessing expensive and fast enough that a login feels instant. At most [`MAX_CONCURRENT_HASHES`]
//! hashes run at once so a burst of logins cannot take all memory or every core; they run on the
//! blocking pool, never on the async workers.
//!
//! Stored as the PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`), so a later change of parameters
//! still verifies old hashes.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const LANES: u32 = 1;
pub const MIN_LENGTH: usize = 10;
pub const MAX_LENGTH: usize = 256;
/// Hashes computed at the same time (each takes 19 MiB and one core).
pub const MAX_CONCURRENT_HASHES: usize = 4;

static HASHING: Semaphore = Semaphore::const_new(MAX_CONCURRENT_HASHES);

/// A hash of a random password, verified when the username is unknown so that an unknown user
/// costs the same time as a wrong password (no user enumeration by timing).
static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| hash_blocking("nexus-dummy-password-0000").ok());

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hash(String),
}

fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's documented bounds.
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, Some(32)).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => argon2().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Hashes a password (argon2id, parameters above) off the async workers.
pub async fn hash(password: &str) -> Result<String, PasswordError> {
    let _permit = HASHING.acquire().await.map_err(|e| PasswordError::Hash(e.to_string()))?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// Checks a password against a stored PHC string; `None` verifies against a dummy hash and
/// always answers false, taking the same time.
pub async fn verify(password: &str, phc: Option<&str>) -> bool {
    let Ok(_permit) = HASHING.acquire().await else { return false };
    let password = password.to_string();
    let phc = phc.map(str::to_string);
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&password, &phc),
        None => {
            if let Some(dummy) = DUMMY_HASH.as_deref() {
                verify_blocking(&password, dummy);
            }
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// Passwords that meet the length rule but are guessed first.
const COMMON: &[&str] = &[
    "password123",
    "password1234",
    "1234567890",
    "12345678910",
    "qwertyuiop",
    "1q2w3e4r5t",
    "iloveyou12",
    "administrator",
    "letmein123",
    "changeme123",
    "welcome123",
    "passw0rd123",
    "0123456789",
    "abcdefghij",
];

/// The password rules, each failure a sentence the user can act on.
pub fn check_rules(username: &str, password: &str) -> Result<(), String> {
    let chars = password.chars().count();
    if chars < MIN_LENGTH {
        return Err(format!("The password must be at least {MIN_LENGTH} characters long (it has {chars})."));
    }
    if password.len() > MAX_LENGTH {
        return Err(format!("The password must be at most {MAX_LENGTH} bytes long."));
    }
    if password.chars().any(char::is_control) {
        return Err("The password must not contain control characters (newlines, tabs, …).".into());
    }
    let mut distinct: Vec<char> = password.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < 4 {
        return Err("The password must use at least 4 different characters.".into());
    }
    let lower = password.to_lowercase();
    if lower.contains(&username.to_lowercase()) && !username.is_empty() {
        return Err("The password must not contain the username.".into());
    }
    if COMMON.contains(&lower.as_str()) {
        return Err("This password is on the list of the most common passwords; choose another.".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_explain_themselves() {
        assert!(check_rules("admin", "short").unwrap_err().contains("at least 10"));
        assert!(check_rules("admin", "aaaaaaaaaaaa").unwrap_err().contains("4 different"));
        assert!(check_rules("admin", "my-admin-pass-1").unwrap_err().contains("username"));
        assert!(check_rules("bob", "password123").unwrap_err().contains("common"));
        assert!(check_rules("bob", "line\nbreak-pass").unwrap_err().contains("control"));
        assert!(check_rules("bob", &"x1".repeat(200)).unwrap_err().contains("at most"));
        check_rules("bob", "correct horse battery").unwrap();
    }

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let phc = hash("correct horse battery").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", Some(&phc)).await);
        assert!(!verify("wrong horse battery", Some(&phc)).await);
        assert!(!verify("correct horse battery", None).await);
        assert!(!verify("x", Some("not a phc string")).await);
    }
}
