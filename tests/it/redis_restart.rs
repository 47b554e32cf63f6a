//! Redis restarted under a running bus: the bus reconnects by itself and no queued item is lost.
//! Uses a private redis-server with an append-only file, so the restart keeps its data as a
//! production Redis with persistence would.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nexus::bus::Bus;
use nexus::bus::redis::RedisBus;

struct PrivateRedis {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut redis = Self { port, dir: tempfile::tempdir().unwrap(), child: None };
        redis.launch();
        redis
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "always", "--dir", self.dir.path().to_str().unwrap()])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start");
    }

    fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
            child.wait().unwrap();
        }
        self.launch();
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_survives_a_redis_restart() {
    let mut redis = PrivateRedis::start();
    let bus = RedisBus::connect(&redis.url(), "nexus:").await.unwrap();
    let mut config_changes = bus.subscribe("config").await.unwrap();
    for i in 0..10 {
        bus.enqueue("jobs", &format!("before-{i}")).await.unwrap();
    }
    let held = bus.dequeue("jobs", Duration::from_secs(1), Duration::ZERO).await.unwrap().unwrap();

    redis.restart();

    // Writes during and after the restart are retried until Redis answers again.
    for i in 0..5 {
        bus.enqueue("jobs", &format!("after-{i}")).await.unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    while let Some(d) = bus.dequeue("jobs", Duration::from_secs(30), Duration::from_secs(3)).await.unwrap() {
        seen.insert(d.payload.clone());
        assert!(bus.ack(&d).await.unwrap());
    }
    assert_eq!(seen.len(), 15, "every item, including the one in flight during the restart: {seen:?}");
    assert!(seen.contains(&held.payload));

    // Pub/sub came back too.
    let heard = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            bus.publish("config", "reloaded").await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), config_changes.recv()).await {
                return m;
            }
        }
    })
    .await
    .expect("pub/sub reconnected");
    assert_eq!(heard, "reloaded");
}

#[tokio::test]
async fn unreachable_services_name_the_url_without_its_password() {
    let err =
        nexus::store::Store::connect_with_retry("postgres://nexus:hunter2@127.0.0.1:1/x", Duration::from_millis(600))
            .await
            .unwrap_err()
            .to_string();
    assert!(err.contains("127.0.0.1:1") && !err.contains("hunter2"), "{err}");
    let err = RedisBus::connect_with_retry("redis://:hunter2@127.0.0.1:1", "p:", Duration::from_millis(600))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("127.0.0.1:1") && !err.contains("hunter2"), "{err}");
}
