//! One suite, three setups: the embedded bus over SQLite, over PostgreSQL, and the Redis bus.

use std::collections::HashSet;
use std::time::Duration;

use nexus::bus::SharedBus;

use crate::support::{TestDb, memory_bus, redis_bus, redis_cleanup, unique_prefix};

const LONG: Duration = Duration::from_secs(30);
const NO_WAIT: Duration = Duration::ZERO;

macro_rules! bus_conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = crate::support::TestDb::sqlite().await;
                super::$name(crate::support::memory_bus(&db.store)).await;
                db.cleanup().await;
            })*
        }
        mod memory_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = crate::support::TestDb::postgres().await;
                super::$name(crate::support::memory_bus(&db.store)).await;
                db.cleanup().await;
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let prefix = crate::support::unique_prefix();
                super::$name(crate::support::redis_bus(&prefix).await).await;
                crate::support::redis_cleanup(&prefix).await;
            })*
        }
    };
}

bus_conformance!(
    fifo_and_ack,
    batches_keep_their_order,
    unacked_item_is_redelivered_after_visibility,
    stale_receipt_cannot_ack,
    nack_makes_item_visible_again,
    dequeue_waits_for_an_enqueue,
    depth_counts_waiting_and_in_flight,
    queues_are_separate,
    concurrent_consumers_get_each_item_once,
    pubsub_reaches_every_subscriber,
    keys_expire,
    counters_count_and_expire,
    leases_have_one_holder,
);

async fn leases_have_one_holder(bus: SharedBus) {
    let ttl = Duration::from_millis(300);
    assert!(bus.hold("lease", "a", ttl).await.unwrap());
    assert!(!bus.hold("lease", "b", ttl).await.unwrap(), "held by a");
    assert!(bus.hold("lease", "a", ttl).await.unwrap(), "a renews");
    assert!(bus.hold("other", "b", ttl).await.unwrap(), "leases are separate");
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert!(bus.hold("lease", "b", ttl).await.unwrap(), "a's lease ran out");
    assert!(!bus.hold("lease", "a", ttl).await.unwrap());
}

async fn fifo_and_ack(bus: SharedBus) {
    for i in 0..5 {
        bus.enqueue("q", &format!("item-{i}")).await.unwrap();
    }
    for i in 0..5 {
        let d = bus.dequeue("q", LONG, NO_WAIT).await.unwrap().expect("an item");
        assert_eq!(d.payload, format!("item-{i}"));
        assert_eq!(d.attempt, 1);
        assert!(bus.ack(&d).await.unwrap());
    }
    assert!(bus.dequeue("q", LONG, NO_WAIT).await.unwrap().is_none());
    assert_eq!(bus.depth("q").await.unwrap(), 0);
}

async fn batches_keep_their_order(bus: SharedBus) {
    bus.enqueue("q", "before").await.unwrap();
    let payloads: Vec<String> = (0..520).map(|i| format!("batch-{i}")).collect();
    let ids = bus.enqueue_batch("q", &payloads).await.unwrap();
    assert_eq!(ids.len(), 520);
    assert!(bus.enqueue_batch("q", &[]).await.unwrap().is_empty());
    bus.enqueue("q", "after").await.unwrap();
    let mut seen = Vec::new();
    // Taken in a batch (oldest first; a backend may hand out fewer) and acked in one: a second
    // ack of the same deliveries removes nothing.
    let batch = bus.dequeue_batch("q", LONG, NO_WAIT, 10).await.unwrap();
    assert!((1..=10).contains(&batch.len()), "{}", batch.len());
    seen.extend(batch.iter().map(|d| d.payload.clone()));
    assert_eq!(bus.ack_batch(&batch).await.unwrap(), batch.len());
    assert_eq!(bus.ack_batch(&batch).await.unwrap(), 0);
    while let Some(d) = bus.dequeue("q", LONG, NO_WAIT).await.unwrap() {
        seen.push(d.payload.clone());
        assert!(bus.ack(&d).await.unwrap());
    }
    let mut expected = vec!["before".to_string()];
    expected.extend(payloads);
    expected.push("after".into());
    assert_eq!(seen, expected);
}

async fn unacked_item_is_redelivered_after_visibility(bus: SharedBus) {
    let id = bus.enqueue("q", "hello").await.unwrap();
    let first = bus.dequeue("q", Duration::from_millis(300), NO_WAIT).await.unwrap().unwrap();
    assert!(bus.dequeue("q", LONG, NO_WAIT).await.unwrap().is_none(), "hidden while in flight");
    let again = bus.dequeue("q", LONG, Duration::from_secs(5)).await.unwrap().expect("redelivered");
    assert_eq!((again.id.as_str(), again.payload.as_str()), (first.id.as_str(), "hello"));
    assert_eq!(again.id, id);
    assert!(again.attempt >= 2);
    assert!(bus.ack(&again).await.unwrap());
}

async fn stale_receipt_cannot_ack(bus: SharedBus) {
    bus.enqueue("q", "x").await.unwrap();
    let first = bus.dequeue("q", Duration::from_millis(200), NO_WAIT).await.unwrap().unwrap();
    let second = bus.dequeue("q", LONG, Duration::from_secs(5)).await.unwrap().expect("redelivered");
    assert!(!bus.ack(&first).await.unwrap(), "the first delivery's ack is stale");
    assert_eq!(bus.depth("q").await.unwrap(), 1);
    assert!(bus.ack(&second).await.unwrap());
    assert!(!bus.ack(&second).await.unwrap(), "a second ack does nothing");
    assert_eq!(bus.depth("q").await.unwrap(), 0);
}

async fn nack_makes_item_visible_again(bus: SharedBus) {
    bus.enqueue("q", "retry me").await.unwrap();
    let d = bus.dequeue("q", LONG, NO_WAIT).await.unwrap().unwrap();
    bus.nack(&d, Duration::ZERO).await.unwrap();
    let again = bus.dequeue("q", LONG, Duration::from_secs(2)).await.unwrap().expect("visible again");
    assert_eq!((again.id.as_str(), again.payload.as_str()), (d.id.as_str(), "retry me"));
    assert!(bus.ack(&again).await.unwrap());
}

async fn dequeue_waits_for_an_enqueue(bus: SharedBus) {
    let producer = bus.clone();
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        producer.enqueue("q", "late").await.unwrap();
    });
    let d = bus.dequeue("q", LONG, Duration::from_secs(10)).await.unwrap().expect("woken by the enqueue");
    assert_eq!(d.payload, "late");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(bus.dequeue("q", LONG, Duration::from_millis(100)).await.unwrap().is_none(), "empty wait ends");
}

async fn depth_counts_waiting_and_in_flight(bus: SharedBus) {
    for i in 0..3 {
        bus.enqueue("q", &i.to_string()).await.unwrap();
    }
    let d = bus.dequeue("q", LONG, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(bus.depth("q").await.unwrap(), 3);
    bus.ack(&d).await.unwrap();
    assert_eq!(bus.depth("q").await.unwrap(), 2);
}

async fn queues_are_separate(bus: SharedBus) {
    bus.enqueue("a", "for a").await.unwrap();
    assert!(bus.dequeue("b", LONG, NO_WAIT).await.unwrap().is_none());
    assert_eq!(bus.dequeue("a", LONG, NO_WAIT).await.unwrap().unwrap().payload, "for a");
}

async fn concurrent_consumers_get_each_item_once(bus: SharedBus) {
    const N: usize = 60;
    for i in 0..N {
        bus.enqueue("q", &i.to_string()).await.unwrap();
    }
    let mut workers = Vec::new();
    for _ in 0..4 {
        let bus = bus.clone();
        workers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(d) = bus.dequeue("q", LONG, Duration::from_millis(300)).await.unwrap() {
                assert!(bus.ack(&d).await.unwrap());
                got.push(d.payload);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), N, "no item twice");
    assert_eq!(unique.len(), N, "every item once");
}

async fn pubsub_reaches_every_subscriber(bus: SharedBus) {
    let mut a = bus.subscribe("config").await.unwrap();
    let mut b = bus.subscribe("config").await.unwrap();
    let mut other = bus.subscribe("other").await.unwrap();
    // Redis subscriptions are established asynchronously; publish until the first one arrives.
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            bus.publish("config", "changed").await.unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), a.recv()).await {
                return m;
            }
        }
    })
    .await
    .expect("a subscriber hears the publish");
    assert_eq!(got, "changed");
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), b.recv()).await.unwrap().unwrap(), "changed");
    assert!(tokio::time::timeout(Duration::from_millis(200), other.recv()).await.is_err(), "other topics stay quiet");
}

async fn keys_expire(bus: SharedBus) {
    bus.set("k", "v", Some(Duration::from_millis(300))).await.unwrap();
    bus.set("forever", "v", None).await.unwrap();
    assert_eq!(bus.get("k").await.unwrap().as_deref(), Some("v"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bus.get("k").await.unwrap(), None);
    assert_eq!(bus.get("forever").await.unwrap().as_deref(), Some("v"));
    assert!(bus.delete("forever").await.unwrap());
    assert!(!bus.delete("forever").await.unwrap());
}

async fn counters_count_and_expire(bus: SharedBus) {
    for expected in 1..=3 {
        assert_eq!(bus.incr("c", Duration::from_millis(400)).await.unwrap(), expected);
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(bus.incr("c", Duration::from_millis(400)).await.unwrap(), 1, "window restarted");
}

/// Items enqueued through one bus instance are there for the next (restart of the embedded bus).
#[tokio::test]
async fn embedded_queue_survives_reopen() {
    let db = TestDb::sqlite().await;
    memory_bus(&db.store).enqueue("q", "before restart").await.unwrap();
    db.store.close().await;
    let reopened = db.reopen().await;
    let d = memory_bus(&reopened).dequeue("q", LONG, NO_WAIT).await.unwrap().unwrap();
    assert_eq!(d.payload, "before restart");
}

/// Two Redis bus instances (two daemons) share one queue without double delivery.
#[tokio::test]
async fn redis_instances_share_a_queue() {
    let prefix = unique_prefix();
    let (a, b) = (redis_bus(&prefix).await, redis_bus(&prefix).await);
    a.enqueue("q", "one").await.unwrap();
    a.enqueue("q", "two").await.unwrap();
    let d1 = a.dequeue("q", LONG, NO_WAIT).await.unwrap().unwrap();
    let d2 = b.dequeue("q", LONG, NO_WAIT).await.unwrap().unwrap();
    assert_ne!(d1.id, d2.id);
    assert!(b.dequeue("q", LONG, NO_WAIT).await.unwrap().is_none());
    redis_cleanup(&prefix).await;
}
