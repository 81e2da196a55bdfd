//! The publisher against the real broker: what each publish outcome is reported as.

use std::time::Duration;

use spenza::config::QueueKind;
use spenza::domain::{EventId, SubscriptionId};
use spenza::queue::{Envelope, PublishError, Publisher, Route, Topology};

use crate::helpers::{TestResources, amqp_url, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_confirmed_and_unroutable_ones_are_reported_as_such() {
    let resources = TestResources::new("1s").await;
    let topology = Topology::new(
        &resources.prefix,
        QueueKind::Quorum,
        vec![Duration::from_secs(1)],
    );
    let (publisher, thread) = Publisher::start(
        &amqp_url(),
        topology.clone(),
        8,
        spenza::telemetry::discard(),
    )
    .unwrap();
    wait_until(
        Duration::from_secs(10),
        "the publisher to connect",
        || async {
            if publisher.is_connected() {
                Ok(())
            } else {
                Err("not connected".into())
            }
        },
    )
    .await;
    let envelope = Envelope {
        event_id: EventId::new(),
        subscription_id: SubscriptionId(uuid::Uuid::new_v4()),
        target_url: "https://example.com/hook".into(),
        retry_count: 0,
    };

    assert_eq!(publisher.publish(&envelope, Route::Deliver).await, Ok(()));
    assert_eq!(
        publisher
            .publish(&envelope, Route::Retry(Duration::from_secs(1)))
            .await,
        Ok(())
    );
    // A wait queue this topology never declared: the broker returns the message.
    assert_eq!(
        publisher
            .publish(&envelope, Route::Retry(Duration::from_secs(7)))
            .await,
        Err(PublishError::Unroutable)
    );
    // The window keeps working after a return.
    assert_eq!(publisher.publish(&envelope, Route::Deliver).await, Ok(()));

    drop(publisher);
    tokio::task::spawn_blocking(move || thread.stop())
        .await
        .unwrap();
    drop(resources);
}
