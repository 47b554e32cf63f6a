//! `kill -9` of a process holding queue items: after restart every unacknowledged item is
//! delivered again. The child is this test binary itself, re-run in "worker" mode.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use nexus::bus::SharedBus;

use crate::support::{TestDb, memory_bus, redis_bus, redis_cleanup, unique_prefix};

const ITEMS: usize = 20;
const TAKEN: usize = 5;
const VISIBILITY: Duration = Duration::from_secs(1);

/// Runs only as the child: takes items without acking, says so, then waits to be killed.
#[tokio::test]
#[ignore = "child process of the kill -9 tests"]
async fn crash_child_worker() {
    let Ok(kind) = std::env::var("NEXUS_CRASH_BUS") else { return };
    let bus: SharedBus = match kind.as_str() {
        "redis" => redis_bus(&std::env::var("NEXUS_CRASH_PREFIX").unwrap()).await,
        _ => {
            let store = nexus::store::Store::connect(&std::env::var("NEXUS_CRASH_DB").unwrap()).await.unwrap();
            memory_bus(&store)
        }
    };
    for _ in 0..TAKEN {
        bus.dequeue("jobs", VISIBILITY, Duration::from_secs(5)).await.unwrap().expect("an item");
    }
    println!("TAKEN");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

fn run_child_and_kill(envs: &[(&str, &str)]) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["crash::crash_child_worker", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let taken = BufReader::new(stdout).lines().map_while(Result::ok).any(|line| line.contains("TAKEN"));
    assert!(taken, "the child took its items");
    child.kill().unwrap(); // SIGKILL: no destructor, no ack, no goodbye
    child.wait().unwrap();
}

async fn assert_all_delivered(bus: &SharedBus) {
    let mut seen = std::collections::BTreeSet::new();
    let mut redelivered = 0;
    while let Some(d) = bus.dequeue("jobs", Duration::from_secs(30), Duration::from_secs(3)).await.unwrap() {
        if d.attempt >= 2 {
            redelivered += 1;
        }
        seen.insert(d.payload.clone());
        assert!(bus.ack(&d).await.unwrap());
    }
    assert_eq!(seen.len(), ITEMS, "every item delivered after the crash");
    assert_eq!(redelivered, TAKEN, "the items the dead worker held came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_survives_kill_9() {
    let db = TestDb::sqlite().await;
    let bus = memory_bus(&db.store);
    for i in 0..ITEMS {
        bus.enqueue("jobs", &format!("job-{i}")).await.unwrap();
    }
    run_child_and_kill(&[("NEXUS_CRASH_BUS", "memory"), ("NEXUS_CRASH_DB", &db.url)]);
    let restarted = memory_bus(&db.reopen().await);
    assert_all_delivered(&restarted).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_on_postgres_survives_kill_9() {
    let db = TestDb::postgres().await;
    let bus = memory_bus(&db.store);
    for i in 0..ITEMS {
        bus.enqueue("jobs", &format!("job-{i}")).await.unwrap();
    }
    run_child_and_kill(&[("NEXUS_CRASH_BUS", "memory"), ("NEXUS_CRASH_DB", &db.url)]);
    assert_all_delivered(&memory_bus(&db.reopen().await)).await;
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_bus_survives_kill_9() {
    let prefix = unique_prefix();
    let bus = redis_bus(&prefix).await;
    for i in 0..ITEMS {
        bus.enqueue("jobs", &format!("job-{i}")).await.unwrap();
    }
    run_child_and_kill(&[("NEXUS_CRASH_BUS", "redis"), ("NEXUS_CRASH_PREFIX", &prefix)]);
    assert_all_delivered(&redis_bus(&prefix).await).await;
    redis_cleanup(&prefix).await;
}
