//! The throwaway NATS server the scale-out tests run against: JetStream is on, a message id is
//! deduplicated by the server (what a leader's re-publish after a crash relies on), the store
//! survives a server restart, and the server and its directory go away with the handle.

use async_nats::jetstream::{self, stream};
use pgroar::cluster::nats::NatsServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_deduplicates_by_message_id_and_keeps_its_store_across_a_restart() {
    let server = NatsServer::start().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: "OPS".into(),
        subjects: vec!["ops.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let publish = |id: &'static str| {
        let js = js.clone();
        async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id);
            js.publish_with_headers("ops.tx", headers, "ops".into())
                .await
                .unwrap()
                .await
                .unwrap()
        }
    };
    assert!(!publish("0/16B3748:0").await.duplicate);
    assert!(
        publish("0/16B3748:0").await.duplicate,
        "a re-publish is deduplicated"
    );
    assert!(!publish("0/16B3750:0").await.duplicate);
    let messages = |js: jetstream::Context| async move {
        js.get_stream("OPS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages
    };
    assert_eq!(messages(js.clone()).await, 2);

    server.restart().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    assert_eq!(
        messages(jetstream::new(client)).await,
        2,
        "{}",
        server.log_tail(20)
    );

    let dir = server.dir().to_path_buf();
    let port = server.port();
    drop(server);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists(), "{} is left behind", dir.display());
}
