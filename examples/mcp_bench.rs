//! MCP server figures on loopback, measured from outside the daemon process:
//! `tools/call` round trips per second and p50/p99 for a trivial tool (`current_time`), one client
//! and eight concurrent ones, and the daemon's resident memory per open MCP session.
//!
//!     cargo build && NEXUS_BIN=$CARGO_TARGET_DIR/debug/nexus cargo run --example mcp_bench [CALLS] [SESSIONS]
//!
//! The daemon runs on a fresh SQLite data dir with an MCP token (so every request pays the token
//! lookup, as a real client does).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService, ServiceExt};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

type Session = RunningService<RoleClient, ()>;

async fn session(url: &str, token: &str) -> anyhow::Result<Session> {
    let config = StreamableHttpClientTransportConfig::with_uri(url).auth_header(token.to_string());
    Ok(().serve(StreamableHttpClientTransport::from_config(config)).await?)
}

async fn call(session: &Session) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let result = session.peer().call_tool(CallToolRequestParams::new("current_time")).await?;
    anyhow::ensure!(result.is_error != Some(true), "tool failed: {result:?}");
    Ok(started.elapsed())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

fn report(label: &str, mut times: Vec<Duration>, wall: Duration) {
    times.sort();
    let pct = |p: f64| times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1000.0;
    println!(
        "{label}: {} calls in {:.2} s = {:.0} calls/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        wall.as_secs_f64(),
        times.len() as f64 / wall.as_secs_f64(),
        pct(0.5),
        pct(0.99),
        times.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let calls: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(2000);
    let sessions: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let bin = std::env::var("NEXUS_BIN").map_err(|_| anyhow::anyhow!("set NEXUS_BIN to the nexus binary"))?;
    let dir = tempfile::tempdir()?;
    let mut daemon = Command::new(&bin)
        .arg("serve")
        .env_clear()
        .env("NEXUS_DATA_DIR", dir.path())
        .env("API_PORT", "0")
        .env("MCP_PORT", "0")
        .env("NEXUS_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = daemon.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = lines.next().ok_or_else(|| anyhow::anyhow!("the daemon printed nothing"))??;
    std::thread::spawn(move || for _ in lines {});
    let urls: Vec<&str> = line.split_whitespace().filter(|w| w.starts_with("http://")).collect();
    let (api, mcp) = (urls[0].trim_end_matches('/').to_string(), urls[1].to_string());
    let result = run(&api, &mcp, daemon.id(), calls, sessions).await;
    daemon.kill()?;
    daemon.wait()?;
    result
}

async fn run(api: &str, mcp: &str, pid: u32, calls: usize, sessions: usize) -> anyhow::Result<()> {
    let token: serde_json::Value = reqwest::Client::new()
        .post(format!("{api}/api/mcp/tokens"))
        .json(&serde_json::json!({"name": "bench"}))
        .send()
        .await?
        .json()
        .await?;
    let token = token["token"].as_str().ok_or_else(|| anyhow::anyhow!("no token: {token}"))?.to_string();

    // One client, sequential round trips.
    let one = session(mcp, &token).await?;
    for _ in 0..50 {
        call(&one).await?;
    }
    let started = Instant::now();
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        times.push(call(&one).await?);
    }
    report("1 client, sequential", times, started.elapsed());

    // Eight clients at once.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(session(mcp, &token).await?);
    }
    let started = Instant::now();
    let per = calls / 8;
    let mut tasks = Vec::new();
    for client in clients {
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::with_capacity(per);
            for _ in 0..per {
                times.push(call(&client).await?);
            }
            let _ = client.cancel().await;
            anyhow::Ok(times)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    report("8 clients, concurrent", all, started.elapsed());
    drop(one);

    // Memory per open session (initialize + tools/list, then idle).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut open = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let s = session(mcp, &token).await?;
        s.peer().list_all_tools().await?;
        open.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(pid)?;
    println!(
        "{sessions} open sessions: daemon RSS {before} KiB -> {after} KiB = {:.1} KiB per session",
        (after.saturating_sub(before)) as f64 / sessions as f64
    );
    for s in open {
        let _ = s.cancel().await;
    }
    Ok(())
}
