//! Schedules: a cron expression, a time zone and a task on a subagent (the seed's model — one
//! schedule per subagent, removed by subagent id). They are stored on the subagent row; this module
//! validates them and serves `/api/schedules`. A change is published on [`TOPIC`] for the scheduler.

mod routes;

pub use routes::routes;

use std::path::Path;
use std::str::FromStr;

/// Bus topic announcing a schedule change; the message is `{"subagent_id": …}`.
pub const TOPIC: &str = "schedules.updated";

/// Checks a cron expression (5 fields, or 6 with seconds first; `@daily` style nicknames),
/// answering what is wrong in a sentence.
pub fn validate_cron(expr: &str) -> Result<(), String> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err("The cron expression is empty; e.g. `0 9 * * 1-5` (09:00 on weekdays).".into());
    }
    if expr.len() > 200 {
        return Err("The cron expression is longer than 200 characters.".into());
    }
    let fields = expr.split_whitespace().count();
    if !expr.starts_with('@') && !(5..=6).contains(&fields) {
        return Err(format!(
            "The cron expression has {fields} field(s); give 5 (minute hour day month weekday) or 6 (with seconds first)."
        ));
    }
    croner::Cron::from_str(expr).map(|_| ()).map_err(|e| format!("The cron expression `{expr}` is not valid: {e}"))
}

/// Checks an IANA time zone name against the system's zone database (`TZDIR` or
/// `/usr/share/zoneinfo`); `UTC` is always known.
pub fn validate_timezone(name: &str) -> Result<(), String> {
    let bad = || format!("`{name}` is not a known IANA time zone; e.g. `UTC`, `Europe/Istanbul`, `America/New_York`.");
    if matches!(name, "UTC" | "Etc/UTC") {
        return Ok(());
    }
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
        });
    if !well_formed {
        return Err(bad());
    }
    let dir = std::env::var("TZDIR").unwrap_or_else(|_| "/usr/share/zoneinfo".into());
    let mut magic = [0u8; 4];
    let is_zone = std::fs::File::open(Path::new(&dir).join(name))
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|_| &magic == b"TZif");
    if is_zone { Ok(()) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_errors_say_what_is_wrong() {
        validate_cron("0 9 * * 1-5").unwrap();
        validate_cron("*/30 * * * * *").unwrap();
        validate_cron("@daily").unwrap();
        assert!(validate_cron("").unwrap_err().contains("empty"));
        assert!(validate_cron("* * *").unwrap_err().contains("3 field"));
        assert!(validate_cron("61 * * * *").unwrap_err().contains("not valid"));
        assert!(validate_cron("a b c d e").unwrap_err().contains("not valid"));
    }

    #[test]
    fn time_zones_come_from_the_zone_database() {
        validate_timezone("UTC").unwrap();
        validate_timezone("Europe/Istanbul").unwrap();
        assert!(validate_timezone("Mars/Olympus").is_err());
        assert!(validate_timezone("../../etc/passwd").is_err());
        assert!(validate_timezone("").is_err());
    }
}
