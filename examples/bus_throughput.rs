//! Queue throughput of each bus adapter: enqueue → dequeue → ack, per second.
//!
//! `cargo run --release --example bus_throughput -- [items] [consumers]`
//! Needs PostgreSQL and Redis on 127.0.0.1 for those rows (skipped with a note when absent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use nexus::bus::SharedBus;
use nexus::bus::memory::MemoryBus;
use nexus::bus::redis::RedisBus;
use nexus::store::Store;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let items: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let consumers: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(4);
    println!(
        "{items} items, {consumers} consumers, {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );

    let dir = tempfile_dir();
    let sqlite = Store::connect(&format!("sqlite://{dir}/bench.db")).await.expect("sqlite");
    sqlite.migrate().await.expect("migrate");
    run("memory bus on SQLite", Arc::new(MemoryBus::new(sqlite)), items, consumers).await;

    let pg_url =
        std::env::var("BENCH_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    match Store::connect(&pg_url).await {
        Ok(pg) => {
            pg.migrate().await.expect("migrate");
            sqlx::query("DELETE FROM bus_queue WHERE queue = 'bench'").execute(pg.pool()).await.ok();
            run("memory bus on PostgreSQL", Arc::new(MemoryBus::new(pg)), items, consumers).await;
        }
        Err(e) => println!("memory bus on PostgreSQL: skipped ({e})"),
    }

    let redis_url = std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("nexus_bench:{}:", std::process::id());
    match RedisBus::connect(&redis_url, &prefix).await {
        Ok(bus) => run("redis bus", Arc::new(bus), items, consumers).await,
        Err(e) => println!("redis bus: skipped ({e})"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

async fn run(name: &str, bus: SharedBus, items: usize, consumers: usize) {
    let started = Instant::now();
    for i in 0..items {
        bus.enqueue("bench", &format!("{{\"n\":{i}}}")).await.expect("enqueue");
    }
    let enqueued = started.elapsed();
    let consume_started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..consumers {
        let bus = bus.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while let Some(d) =
                bus.dequeue("bench", Duration::from_secs(60), Duration::from_millis(200)).await.expect("dequeue")
            {
                bus.ack(&d).await.expect("ack");
                n += 1;
            }
            n
        }));
    }
    let mut done = 0;
    for w in workers {
        done += w.await.expect("worker");
    }
    let consumed = consume_started.elapsed().saturating_sub(Duration::from_millis(200));
    assert_eq!(done, items);
    println!(
        "{name:<26} enqueue {:>8.0}/s   dequeue+ack {:>8.0}/s   end to end {:>8.0}/s",
        items as f64 / enqueued.as_secs_f64(),
        items as f64 / consumed.as_secs_f64(),
        items as f64 / (enqueued + consumed).as_secs_f64()
    );
}

fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("nexus-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.display().to_string()
}
