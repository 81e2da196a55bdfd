//! The publisher against the real broker: what each publish outcome is reported as.

use std::time::Duration;

use spenza::config::QueueKind;
use spenza::queue::{Consumed, Consumer, PublishError, Route, Topology};

use crate::helpers::{
    TestResources, amqp_url, connected_publisher, made_up_envelope, ready_in, stop_publisher,
    wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_are_confirmed_and_unroutable_ones_are_reported_as_such() {
    let resources = TestResources::new("1s").await;
    let topology = Topology::new(
        &resources.prefix,
        QueueKind::Quorum,
        vec![Duration::from_secs(1)],
    );
    let (publisher, thread) = connected_publisher(topology.clone()).await;
    let envelope = made_up_envelope();

    assert_eq!(publisher.publish(&envelope, Route::Deliver).await, Ok(()));
    assert_eq!(
        publisher
            .publish(&envelope, Route::Wait(Duration::from_secs(1)))
            .await,
        Ok(())
    );
    // A wait queue gone from the broker (deleted by hand): the broker returns the message.
    let wait_queue = topology.wait_queue_for(Duration::from_secs(1));
    {
        let mut connection = amiquip::Connection::insecure_open(&amqp_url()).unwrap();
        let channel = connection.open_channel(None).unwrap();
        channel
            .queue_delete(&wait_queue, amiquip::QueueDeleteOptions::default())
            .unwrap();
        connection.close().unwrap();
    }
    assert_eq!(
        publisher
            .publish(&envelope, Route::Wait(Duration::from_secs(1)))
            .await,
        Err(PublishError::Unroutable)
    );
    // The window keeps working after a return.
    assert_eq!(publisher.publish(&envelope, Route::Deliver).await, Ok(()));

    stop_publisher(publisher, thread).await;
    drop(resources);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_dropped_unsettled_frees_its_slot_and_its_message_comes_back() {
    let resources = TestResources::new("").await;
    let topology = Topology::new(&resources.prefix, QueueKind::Quorum, Vec::new());
    let (publisher, thread) = connected_publisher(topology.clone()).await;
    // One message in flight at most: the second delivery needs the first's slot back.
    let (consumer, mut jobs) = Consumer::start(
        &[amqp_url()],
        topology.clone(),
        Consumed::Deliver,
        1,
        Duration::from_secs(1),
        spenza::telemetry::discard(),
    )
    .unwrap();
    let envelope = made_up_envelope();
    publisher.publish(&envelope, Route::Deliver).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), jobs.recv())
        .await
        .expect("the job is handed out")
        .unwrap();
    assert_eq!(first.envelope.event_id, envelope.event_id);
    // As a delivery task that panicked would: gone without a word.
    drop(first);
    let again = tokio::time::timeout(Duration::from_secs(10), jobs.recv())
        .await
        .expect("the message is delivered again")
        .unwrap();
    assert_eq!(again.envelope.event_id, envelope.event_id);
    again.acker.ack();

    drop(publisher);
    tokio::task::spawn_blocking(move || {
        thread.stop();
        consumer.join();
    })
    .await
    .unwrap();
    drop(resources);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_an_envelope_is_dropped_not_redelivered() {
    let resources = TestResources::new("").await;
    let topology = Topology::new(&resources.prefix, QueueKind::Quorum, Vec::new());
    let (consumer, mut jobs) = Consumer::start(
        &[amqp_url()],
        topology.clone(),
        Consumed::Deliver,
        1,
        Duration::from_secs(1),
        spenza::telemetry::discard(),
    )
    .unwrap();
    wait_until(Duration::from_secs(10), "the consumer's queue", || async {
        ready_in(&topology.deliver_queue()).map(drop)
    })
    .await;
    let mut connection = amiquip::Connection::insecure_open(&amqp_url()).unwrap();
    let channel = connection.open_channel(None).unwrap();
    let publish = |body: &[u8]| {
        channel
            .basic_publish(
                topology.deliver_exchange(),
                amiquip::Publish::new(body, topology.deliver_routing_key()),
            )
            .unwrap();
    };
    let envelope = made_up_envelope();
    // Garbage first, then a real envelope: with one message in flight at a time, the envelope
    // is handed out only once the garbage has been dealt with.
    publish(b"not an envelope");
    publish(&envelope.to_bytes());
    let job = tokio::time::timeout(Duration::from_secs(10), jobs.recv())
        .await
        .expect("the envelope behind it is handed out")
        .unwrap();
    assert_eq!(job.envelope.event_id, envelope.event_id);
    job.acker.ack();
    wait_until(Duration::from_secs(10), "the queue to be empty", || async {
        match ready_in(&topology.deliver_queue())? {
            0 => Ok(()),
            ready => Err(format!("{ready} ready")),
        }
    })
    .await;
    assert!(
        tokio::time::timeout(Duration::from_millis(500), jobs.recv())
            .await
            .is_err(),
        "nothing more is handed out"
    );
    connection.close().unwrap();
    tokio::task::spawn_blocking(move || consumer.join())
        .await
        .unwrap();
    drop(resources);
}
