//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30-second steps, ±1 step of clock skew — what
//! every authenticator app speaks). The secret is kept in the vault; a pending secret (setup done,
//! not yet enabled) under its own name, so a half-finished setup never locks anyone out.
//! A code is accepted once: its step is claimed in the users table ([`super::users::claim_totp_step`]).

use totp_rs::{Algorithm, Builder, Secret, Totp};

use crate::secrets::{Vault, VaultError};

pub const ISSUER: &str = "Nexus";

pub fn vault_name(user_id: i64) -> String {
    format!("auth.totp.{user_id}")
}

pub fn pending_vault_name(user_id: i64) -> String {
    format!("auth.totp_pending.{user_id}")
}

/// A TOTP generator for a base32 secret; `None` when the stored secret is unusable.
pub fn totp(secret_b32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_b32).ok()?;
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret)
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .ok()
}

/// A fresh random 160-bit secret, base32.
pub fn generate_secret() -> String {
    Secret::generate().to_base32()
}

/// The step a code belongs to, when it is valid now (±1 step).
pub fn check(totp: &Totp, code: &str) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let now = u64::try_from(crate::store::now_ms() / 1000).ok()?;
    totp.check(&code, now).and_then(|step| i64::try_from(step).ok())
}

/// The enabled secret of a user.
pub async fn load(vault: &Vault, user_id: i64, account: &str) -> Result<Option<Totp>, VaultError> {
    Ok(vault.get(&vault_name(user_id)).await?.and_then(|s| totp(s.expose(), account)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_check_and_junk_does_not() {
        let t = totp(&generate_secret(), "alice").unwrap();
        let code = t.generate_current().to_string();
        assert!(check(&t, &code).is_some());
        assert!(check(&t, "abcdef").is_none());
        assert!(check(&t, "1234567").is_none());
        assert!(t.to_url().unwrap().starts_with("otpauth://totp/Nexus:alice?"));
    }
}
