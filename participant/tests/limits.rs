//! The coordinator's resource caps over real gRPC: a selected participant that opens an upload
//! and stalls is cut off after `limits.upload_idle_timeout_s` (the round goes on), a second
//! concurrent upload of one participant is refused, and connections beyond
//! `limits.max_connections` are closed at accept while the server keeps serving.

mod common;

use std::time::{Duration, Instant};

use common::*;
use coordinator::{CoordinatorConfig, FederationSpec, Protection};
use participant::SiteIdentity;
use proto::v1::{self as pb, federation_client::FederationClient, upload_chunk};
use tonic::Code;
use tonic::transport::Channel;

/// An enrolled participant speaking raw protocol messages.
struct RawSite {
    client: FederationClient<Channel>,
    identity: SiteIdentity,
    id: String,
}

impl RawSite {
    async fn join(url: &str, tag: &str) -> Self {
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FederationClient::new(channel);
        let identity = SiteIdentity::generate().unwrap();
        let id = client
            .enroll(pb::EnrollRequest {
                token: TOKEN.into(),
                public_key: identity.public_key().to_vec(),
                site_label: "raw".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .participant_id;
        let mut join = pb::JoinRequest {
            auth: None,
            tag: tag.into(),
        };
        join.auth = Some(identity.authorize(&id, proto::method::JOIN, "", 0, &join));
        client.join(join).await.unwrap();
        Self {
            client,
            identity,
            id,
        }
    }

    async fn task(&mut self, federation: &str) -> pb::RoundTask {
        let mut task = pb::TaskRequest {
            auth: None,
            federation: federation.into(),
            wait_ms: 200,
        };
        task.auth =
            Some(
                self.identity
                    .authorize(&self.id, proto::method::GET_TASK, federation, 0, &task),
            );
        self.client.get_task(task).await.unwrap().into_inner()
    }

    /// Opens an upload for `round` that sends its header and then, until `hold` is dropped,
    /// nothing.
    fn stalled_upload(
        &self,
        federation: &str,
        round: u64,
        bytes: u64,
    ) -> (
        tokio::sync::mpsc::Sender<pb::UploadChunk>,
        tokio::task::JoinHandle<Result<tonic::Response<pb::SubmitReceipt>, tonic::Status>>,
    ) {
        let mut header = pb::UploadHeader {
            auth: None,
            federation: federation.into(),
            round,
            element_type: pb::ElementType::F32 as i32,
            total_bytes: bytes,
            sha256: vec![0; 32],
            sample_count: 10,
        };
        header.auth = Some(self.identity.authorize(
            &self.id,
            proto::method::UPLOAD_UPDATE,
            federation,
            round,
            &header,
        ));
        let (hold, chunks) = tokio::sync::mpsc::channel(4);
        let first = pb::UploadChunk {
            part: Some(upload_chunk::Part::Header(header)),
        };
        let stream = tokio_stream::StreamExt::chain(
            tokio_stream::iter([first]),
            tokio_stream::wrappers::ReceiverStream::new(chunks),
        );
        let mut client = self.client.clone();
        let call = tokio::spawn(async move { client.upload_update(stream).await });
        (hold, call)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_cut_off_and_a_second_concurrent_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = 100;
    let spec = FederationSpec {
        min_participants: 2,
        ..FederationSpec::vector("load", d, Protection::Plain, 1)
    };
    let mut config = CoordinatorConfig::new(dir.path(), TOKEN, vec![spec]);
    config.insecure_plaintext = true;
    config.limits.upload_idle_timeout_s = 1;
    let coord = RunningCoordinator::start_with("127.0.0.1:0", config).await;
    let mut a = RawSite::join(&coord.url(), "load").await;
    let mut b = RawSite::join(&coord.url(), "load").await;
    let round = loop {
        let (ta, _) = (a.task("load").await, b.task("load").await);
        if let Some(pb::round_task::Task::Train(train)) = ta.task {
            break train.round;
        }
    };

    let (hold, stalled) = a.stalled_upload("load", round, d * 4);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_hold2, second) = a.stalled_upload("load", round, d * 4);
    let refused = second.await.unwrap().unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");

    let started = Instant::now();
    let cut = stalled.await.unwrap().unwrap_err();
    assert_eq!(cut.code(), Code::DeadlineExceeded, "{cut:?}");
    assert!(cut.message().contains("upload_idle_timeout_s"), "{cut:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    drop(hold);

    // The slot is free again: a complete upload from the same participant is accepted.
    let update = vec![0.5f32; d as usize];
    let bytes = proto::chunk::f32_to_bytes(&update);
    let mut header = pb::UploadHeader {
        auth: None,
        federation: "load".into(),
        round,
        element_type: pb::ElementType::F32 as i32,
        total_bytes: bytes.len() as u64,
        sha256: proto::chunk::sha256(&bytes).to_vec(),
        sample_count: 10,
    };
    header.auth =
        Some(
            a.identity
                .authorize(&a.id, proto::method::UPLOAD_UPDATE, "load", round, &header),
        );
    let chunks = vec![
        pb::UploadChunk {
            part: Some(upload_chunk::Part::Header(header)),
        },
        pb::UploadChunk {
            part: Some(upload_chunk::Part::Data(bytes.into())),
        },
    ];
    let receipt = a
        .client
        .upload_update(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt.bytes_received, d * 4);
    coord.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = CoordinatorConfig::new(dir.path(), TOKEN, vec![]);
    config.insecure_plaintext = true;
    config.limits.max_connections = 50;
    let coord = RunningCoordinator::start_with("127.0.0.1:0", config).await;
    // Idle connections that never speak HTTP/2 hold every slot.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(coord.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The next connection is closed at accept: the call fails, and it is counted.
    let refused = tonic::transport::Endpoint::from_shared(coord.url())
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    let failed = match refused {
        Err(_) => true,
        Ok(channel) => FederationClient::new(channel)
            .enroll(pb::EnrollRequest::default())
            .await
            .is_err_and(|e| e.code() != Code::Unauthenticated),
    };
    assert!(failed, "a connection beyond the cap was served");
    let counted = Instant::now();
    while coord.metrics.connections_refused() == 0 {
        assert!(
            counted.elapsed() < Duration::from_secs(5),
            "refusal not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Closing the idle ones frees their slots: served again.
    drop(idle);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let channel = tonic::transport::Endpoint::from_shared(coord.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let err = FederationClient::new(channel)
        .enroll(pb::EnrollRequest {
            token: "wrong-token-000".into(),
            public_key: vec![0; 32],
            site_label: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    coord.stop().await;
}
