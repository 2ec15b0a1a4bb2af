//! Refused calls over real gRPC: unauthenticated, unknown, forged, replayed, oversized and
//! malformed requests each get a clear status, and the server keeps serving.

mod common;

use common::*;
use coordinator::{FederationSpec, Protection};
use participant::SiteIdentity;
use proto::v1::{self as pb, upload_chunk};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let spec = FederationSpec::vector("load", 100, Protection::Plain, 1);
    let coord = RunningCoordinator::start(dir.path(), vec![spec]).await;
    let mut client = participant::client::connect(&coord.endpoint())
        .await
        .unwrap();
    let identity = SiteIdentity::generate().unwrap();

    // Enrollment with a wrong token or a malformed key.
    let enroll = |token: &str, key: Vec<u8>| pb::EnrollRequest {
        token: token.into(),
        public_key: key,
        site_label: "s".into(),
    };
    let err = client
        .enroll(enroll("wrong-token-000", identity.public_key().to_vec()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client
        .enroll(enroll(TOKEN, vec![1, 2, 3]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let id = client
        .enroll(enroll(TOKEN, identity.public_key().to_vec()))
        .await
        .unwrap()
        .into_inner()
        .participant_id;

    // Unauthenticated call.
    let err = client
        .join(pb::JoinRequest {
            auth: None,
            tag: "load".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("missing request authentication"));

    // Unknown participant.
    let mut join = pb::JoinRequest {
        auth: None,
        tag: "load".into(),
    };
    join.auth = Some(identity.authorize("p999999", proto::method::JOIN, "", 0, &join));
    let err = client.join(join).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("unknown participant"));

    // Forged: signed by another key, and a field changed after signing.
    let forger = SiteIdentity::generate().unwrap();
    let mut join = pb::JoinRequest {
        auth: None,
        tag: "load".into(),
    };
    join.auth = Some(forger.authorize(&id, proto::method::JOIN, "", 0, &join));
    let err = client.join(join).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("signature"));
    let mut join = pb::JoinRequest {
        auth: None,
        tag: "pv".into(),
    };
    join.auth = Some(identity.authorize(&id, proto::method::JOIN, "", 0, &join));
    join.tag = "load".into();
    assert_eq!(
        client.join(join).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    // A signature for another method does not carry over.
    let mut join = pb::JoinRequest {
        auth: None,
        tag: "load".into(),
    };
    join.auth = Some(identity.authorize(&id, proto::method::GET_TASK, "", 0, &join));
    assert_eq!(
        client.join(join).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Valid, then replayed.
    let mut join = pb::JoinRequest {
        auth: None,
        tag: "load".into(),
    };
    join.auth = Some(identity.authorize(&id, proto::method::JOIN, "", 0, &join));
    let joined = client.join(join.clone()).await.unwrap().into_inner();
    assert_eq!(joined.federation, "load");
    let err = client.join(join).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("replayed"), "{}", err.message());

    // Oversized unary message (over the 4 MiB decoding limit).
    let mut big = pb::ProtocolSubmission {
        auth: None,
        federation: "load".into(),
        round: 1,
        phase: pb::SecAggPhase::ShareKeys as i32,
        payload: vec![0u8; proto::MAX_MESSAGE_BYTES + 1],
    };
    big.auth = Some(identity.authorize(&id, proto::method::SUBMIT_PROTOCOL, "load", 1, &big));
    // A client that does not limit what it sends, so the server's limit is what refuses it.
    let channel = tonic::transport::Endpoint::from_shared(coord.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut unlimited =
        pb::federation_client::FederationClient::new(channel).max_encoding_message_size(64 << 20);
    let err = unlimited.submit_protocol(big).await.unwrap_err();
    assert!(
        matches!(err.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{err:?}"
    );

    // Malformed uploads: data before the header; a header announcing an absurd length.
    let data_first = vec![pb::UploadChunk {
        part: Some(upload_chunk::Part::Data(vec![0u8; 8].into())),
    }];
    let err = client
        .upload_update(tokio_stream::iter(data_first))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let mut header = pb::UploadHeader {
        auth: None,
        federation: "load".into(),
        round: 1,
        element_type: pb::ElementType::F32 as i32,
        total_bytes: u64::MAX,
        sha256: vec![0; 32],
        sample_count: 1,
    };
    header.auth = Some(identity.authorize(&id, proto::method::UPLOAD_UPDATE, "load", 1, &header));
    let stream = vec![pb::UploadChunk {
        part: Some(upload_chunk::Part::Header(header)),
    }];
    let err = client
        .upload_update(tokio_stream::iter(stream))
        .await
        .unwrap_err();
    // No round is running yet (only one member), so the phase check refuses it first.
    assert!(
        matches!(
            err.code(),
            Code::FailedPrecondition | Code::ResourceExhausted | Code::InvalidArgument
        ),
        "{err:?}"
    );

    // Unknown phase value in a protocol submission.
    let mut bad_phase = pb::ProtocolSubmission {
        auth: None,
        federation: "load".into(),
        round: 1,
        phase: 42,
        payload: vec![],
    };
    bad_phase.auth =
        Some(identity.authorize(&id, proto::method::SUBMIT_PROTOCOL, "load", 1, &bad_phase));
    assert_eq!(
        client.submit_protocol(bad_phase).await.unwrap_err().code(),
        Code::InvalidArgument
    );

    // Bytes that do not parse as the request message: INVALID_ARGUMENT naming it (not INTERNAL).
    let channel = tonic::transport::Endpoint::from_shared(coord.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.unwrap();
    // Field 1 (auth), length-delimited, declares 100 bytes and carries one.
    let err = raw
        .unary::<_, pb::JoinResponse, _>(
            tonic::Request::new(vec![0x0a, 100, 0]),
            tonic::codegen::http::uri::PathAndQuery::from_static(proto::method::JOIN),
            RawBytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("malformed JoinRequest"),
        "{}",
        err.message()
    );

    // Still serving: a fresh, correctly signed call succeeds.
    let mut task = pb::TaskRequest {
        auth: None,
        federation: "load".into(),
        wait_ms: 0,
    };
    task.auth = Some(identity.authorize(&id, proto::method::GET_TASK, "load", 0, &task));
    let task = client.get_task(task).await.unwrap().into_inner();
    assert!(matches!(task.task, Some(pb::round_task::Task::Idle(_))));
    assert!(coord.metrics.auth_failures() >= 6);
    coord.stop().await;
}

/// Sends a request body as given, so the server's decoding of arbitrary bytes is what is tested.
#[derive(Default)]
struct RawBytesCodec;

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Codec for RawBytesCodec {
    type Encode = Vec<u8>;
    type Decode = pb::JoinResponse;
    type Encoder = RawEncoder;
    type Decoder = <proto::codec::StrictCodec<pb::JoinRequest, pb::JoinResponse> as tonic::codec::Codec>::Decoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic::codec::Codec::decoder(&mut proto::codec::StrictCodec::<
            pb::JoinRequest,
            pb::JoinResponse,
        >::default())
    }
}
