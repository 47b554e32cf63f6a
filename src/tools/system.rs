//! Built-in host tools: `system_info` (CPU, memory, disks, temperatures, uptime, load) and
//! `current_time`. Both are read-only. sysinfo work is blocking and not free, so each call
//! refreshes only what its `topic` asks for, on the blocking pool.

use std::time::Duration;

use serde_json::{Value, json};
use sysinfo::{Components, Disks, System};

use super::{Risk, Tool, ToolError, ToolRegistry};

/// Adds the system tools to the registry.
pub fn register(registry: &ToolRegistry) {
    for tool in [system_info(), current_time()] {
        match tool {
            Ok(tool) => registry.register(tool),
            // A schema typo is a programming error; refuse the tool loudly instead of panicking.
            Err(e) => tracing::error!(error = %e, "built-in tool not registered"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    All,
    Cpu,
    Ram,
    Disk,
    Uptime,
}

impl Topic {
    fn parse(value: Option<&str>) -> Self {
        match value {
            Some("cpu") => Self::Cpu,
            Some("ram") => Self::Ram,
            Some("disk") => Self::Disk,
            Some("uptime") => Self::Uptime,
            _ => Self::All,
        }
    }
    fn wants(self, other: Topic) -> bool {
        self == Topic::All || self == other
    }
}

fn system_info() -> Result<Tool, String> {
    Tool::new(
        "system_info",
        "Facts about this server: CPU usage and load, memory and swap, disks (space per mount), \
         temperatures, uptime. `topic` narrows it: all (default), cpu, ram, disk, uptime.",
        json!({
            "type": "object",
            "properties": {
                "topic": {"type": "string", "enum": ["all", "cpu", "ram", "disk", "uptime"], "default": "all"}
            },
            "additionalProperties": false
        }),
        Risk::Read,
        |args: Value, _caller| async move {
            let topic = Topic::parse(args.get("topic").and_then(Value::as_str));
            tokio::task::spawn_blocking(move || collect(topic))
                .await
                .map_err(|e| ToolError::Failed(format!("system_info worker failed: {e}")))?
        },
    )
    .map(|tool| tool.with_timeout(Duration::from_secs(10)))
}

fn gib(bytes: u64) -> f64 {
    (bytes as f64 / (1u64 << 30) as f64 * 100.0).round() / 100.0
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { (part as f64 / whole as f64 * 1000.0).round() / 10.0 }
}

/// Gathers the facts of one topic. Runs on the blocking pool (sysinfo reads /proc and /sys, and
/// CPU usage needs two samples some 200 ms apart).
fn collect(topic: Topic) -> Result<Value, ToolError> {
    let fail = |what: &str, e: sysinfo::Error| ToolError::Failed(format!("cannot read {what}: {e}"));
    let mut out = serde_json::Map::new();
    out.insert("host".into(), json!(System::host_name().ok()));
    if topic.wants(Topic::Cpu) {
        let mut sys = System::new().map_err(|e| fail("CPU facts", e))?;
        sys.refresh_cpu_usage();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL.max(Duration::from_millis(200)));
        sys.refresh_cpu_usage();
        let cpus = sys.cpus();
        let load = System::load_average().ok();
        out.insert(
            "cpu".into(),
            json!({
                "usage_percent": (sys.global_cpu_usage() * 10.0).round() / 10.0,
                "logical_cores": cpus.len(),
                "physical_cores": System::physical_core_count().ok(),
                "brand": cpus.first().map(|c| c.brand().to_string()),
                "arch": System::cpu_arch(),
                "load_average": load.map(|l| json!({"one": l.one, "five": l.five, "fifteen": l.fifteen})),
                "per_core_percent": cpus.iter().map(|c| (c.usage() * 10.0).round() / 10.0).collect::<Vec<_>>(),
            }),
        );
        // Temperatures belong with the CPU: most sensors are CPU/package ones.
        let temps: Vec<Value> = Components::new_with_refreshed_list()
            .map(|components| {
                components
                    .iter()
                    .filter_map(|c| {
                        c.temperature().map(
                            |t| json!({"label": c.label(), "celsius": t, "max": c.max(), "critical": c.critical()}),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.insert("temperatures".into(), json!(temps));
    }
    if topic.wants(Topic::Ram) {
        let mut sys = System::new().map_err(|e| fail("memory facts", e))?;
        sys.refresh_memory();
        let (total, available) = (sys.total_memory(), sys.available_memory());
        out.insert(
            "memory".into(),
            json!({
                "total_gib": gib(total),
                "used_gib": gib(total.saturating_sub(available)),
                "available_gib": gib(available),
                "used_percent": percent(total.saturating_sub(available), total),
                "swap_total_gib": gib(sys.total_swap()),
                "swap_used_gib": gib(sys.used_swap()),
            }),
        );
    }
    if topic.wants(Topic::Disk) {
        let disks = Disks::new_with_refreshed_list().map_err(|e| fail("disks", e))?;
        let list: Vec<Value> = disks
            .iter()
            .map(|d| {
                let (total, free) = (d.total_space(), d.available_space());
                json!({
                    "mount": d.mount_point().display().to_string(),
                    "filesystem": d.file_system().to_string_lossy(),
                    "total_gib": gib(total),
                    "available_gib": gib(free),
                    "used_percent": percent(total.saturating_sub(free), total),
                })
            })
            .collect();
        out.insert("disks".into(), json!(list));
    }
    if topic.wants(Topic::Uptime) {
        let uptime = System::uptime().map_err(|e| fail("uptime", e))?;
        out.insert(
            "uptime".into(),
            json!({
                "seconds": uptime,
                "human": format!("{}d {}h {}m", uptime / 86_400, uptime / 3600 % 24, uptime / 60 % 60),
                "os": System::long_os_version().ok(),
                "kernel": System::kernel_version().ok(),
            }),
        );
    }
    Ok(Value::Object(out))
}

fn current_time() -> Result<Tool, String> {
    Tool::new(
        "current_time",
        "The current date and time: UTC (RFC 3339) and unix milliseconds; with `timezone` \
         (an IANA name such as Europe/Istanbul) also the local time there.",
        json!({
            "type": "object",
            "properties": {"timezone": {"type": "string", "minLength": 1, "maxLength": 64}},
            "additionalProperties": false
        }),
        Risk::Read,
        |args: Value, _caller| async move {
            let now = jiff::Timestamp::now();
            let mut out = json!({
                "utc": now.to_string(),
                "unix_ms": now.as_millisecond(),
            });
            if let Some(name) = args.get("timezone").and_then(Value::as_str) {
                let zoned = now
                    .in_tz(name)
                    .map_err(|e| ToolError::Failed(format!("unknown timezone '{name}' (use an IANA name): {e}")))?;
                out["timezone"] = json!(name);
                out["local"] = json!(zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
                out["weekday"] = json!(zoned.strftime("%A").to_string());
            }
            Ok(out)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::Caller;

    #[tokio::test]
    async fn system_info_reports_the_asked_topic_only() {
        let registry = ToolRegistry::new();
        register(&registry);
        let ram = registry.call("system_info", json!({"topic": "ram"}), Caller::System).await.unwrap();
        assert!(ram["memory"]["total_gib"].as_f64().unwrap() > 0.0, "{ram}");
        assert!(ram.get("cpu").is_none() && ram.get("disks").is_none(), "{ram}");
        let up = registry.call("system_info", json!({"topic": "uptime"}), Caller::System).await.unwrap();
        assert!(up["uptime"]["seconds"].as_u64().unwrap() > 0, "{up}");
        let bad = registry.call("system_info", json!({"topic": "gpu"}), Caller::System).await;
        assert!(matches!(bad, Err(ToolError::InvalidArguments { .. })), "{bad:?}");
    }

    #[tokio::test]
    async fn current_time_in_utc_and_a_zone() {
        let registry = ToolRegistry::new();
        register(&registry);
        let t = registry.call("current_time", json!({}), Caller::System).await.unwrap();
        assert!(t["utc"].as_str().unwrap().ends_with('Z'), "{t}");
        assert!(t["unix_ms"].as_i64().unwrap() > 1_700_000_000_000);
        // Zone names need the system tz database; accept its absence but not a wrong answer.
        if std::path::Path::new("/usr/share/zoneinfo/Asia/Tokyo").exists() {
            let t = registry.call("current_time", json!({"timezone": "Asia/Tokyo"}), Caller::System).await.unwrap();
            assert!(t["local"].as_str().unwrap().ends_with("+09:00"), "{t}");
        }
        let bad = registry.call("current_time", json!({"timezone": "Mars/Olympus"}), Caller::System).await;
        assert!(matches!(bad, Err(ToolError::Failed(_))), "{bad:?}");
    }
}
