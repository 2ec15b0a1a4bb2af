//! The participant's side of the wire: signed calls, chunked uploads and verified downloads.
//! Every outgoing message passes through one function, [`FederationLink::send_log`], so a
//! [`WireTap`] sees exactly what leaves the site.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use prost::bytes::Bytes;
use proto::chunk::Reassembly;
use proto::v1::federation_client::FederationClient;
use proto::v1::{self as pb, download_chunk, upload_chunk};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::ParticipantError;
use crate::identity::SiteIdentity;

/// Observes every message a participant sends (tests use it to prove no telemetry leaves).
pub trait WireTap: Send + Sync {
    /// `method` is the gRPC method; `encoded` the protobuf bytes of the message as sent.
    fn outgoing(&self, method: &'static str, encoded: &[u8]);
}

/// An authenticated connection to the coordinator.
#[derive(Clone)]
pub struct FederationLink {
    client: FederationClient<Channel>,
    identity: Arc<SiteIdentity>,
    participant_id: String,
    tap: Option<Arc<dyn WireTap>>,
}

/// Where the coordinator is and how its identity is checked.
#[derive(Clone, PartialEq, Eq)]
pub struct CoordinatorEndpoint {
    url: String,
    /// PEM certificates of the CA(s) the coordinator's certificate must chain to; `None` only
    /// for an explicitly insecure plaintext endpoint.
    ca_pem: Option<Vec<u8>>,
}

impl CoordinatorEndpoint {
    /// An `https://` coordinator whose certificate must be signed by a CA in `ca_pem` and name
    /// the URL's host. `ca_label` names the CA's source in errors.
    pub fn tls(url: &str, ca_pem: &[u8], ca_label: &str) -> Result<Self, ParticipantError> {
        if !url.starts_with("https://") {
            return Err(ParticipantError::Config(format!(
                "coordinator `{url}`: a TLS endpoint needs an https:// URL"
            )));
        }
        use rustls::pki_types::pem::PemObject as _;
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ParticipantError::Config(format!("{ca_label}: invalid PEM ({e})")))?;
        if certs.is_empty() {
            return Err(ParticipantError::Config(format!(
                "{ca_label}: no CERTIFICATE block in the PEM file"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| {
                ParticipantError::Config(format!("{ca_label}: not a usable CA certificate ({e})"))
            })?;
        }
        Ok(Self {
            url: url.to_string(),
            ca_pem: Some(ca_pem.to_vec()),
        })
    }

    /// A plaintext `http://` coordinator: tests only (no confidentiality, no server identity).
    pub fn insecure_plaintext(url: &str) -> Result<Self, ParticipantError> {
        if !url.starts_with("http://") {
            return Err(ParticipantError::Config(format!(
                "coordinator `{url}`: a plaintext endpoint needs an http:// URL"
            )));
        }
        Ok(Self {
            url: url.to_string(),
            ca_pem: None,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_tls(&self) -> bool {
        self.ca_pem.is_some()
    }
}

impl std::fmt::Debug for CoordinatorEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorEndpoint")
            .field("url", &self.url)
            .field("tls", &self.is_tls())
            .finish()
    }
}

/// How long a TLS handshake may take before the connection attempt fails.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a federation client to the coordinator (TLS unless the endpoint is insecure plaintext).
pub async fn connect(
    endpoint: &CoordinatorEndpoint,
) -> Result<FederationClient<Channel>, ParticipantError> {
    Ok(FederationClient::new(open_channel(endpoint).await?)
        .max_decoding_message_size(proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(proto::MAX_MESSAGE_BYTES))
}

/// Opens a gRPC channel to the coordinator, for any of its services (TLS unless the endpoint
/// is insecure plaintext).
pub async fn open_channel(endpoint: &CoordinatorEndpoint) -> Result<Channel, ParticipantError> {
    let url = endpoint.url();
    let mut channel = Endpoint::from_shared(url.to_string())
        .map_err(|e| ParticipantError::Config(format!("coordinator url `{url}`: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true);
    if let Some(ca_pem) = &endpoint.ca_pem {
        // The server name checked against the certificate is the URL's host.
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        channel = channel
            .tls_config(tls)
            .map_err(|e| ParticipantError::Config(format!("coordinator url `{url}`: {e}")))?;
    }
    channel
        .connect()
        .await
        .map_err(|e| classify_connect_error(url, e))
}

/// A handshake refused by rustls becomes a (non-transient) [`ParticipantError::Tls`] that says
/// why; anything else stays a transport error worth retrying.
fn classify_connect_error(url: &str, error: tonic::transport::Error) -> ParticipantError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        // io::Error::source skips the error it wraps, so look inside explicitly.
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(e), inner].into_iter().flatten() {
            if let Some(tls) = candidate.downcast_ref::<rustls::Error>() {
                let hint = match tls {
                    rustls::Error::InvalidCertificate(_) => {
                        "; check ca_cert and that the URL's host is a name in the \
                         coordinator's certificate"
                    }
                    _ => "; is the coordinator serving TLS?",
                };
                return ParticipantError::Tls(format!("{url}: {tls}{hint}"));
            }
        }
        source = e.source();
    }
    ParticipantError::Transport(error)
}

impl FederationLink {
    /// Enrolls `identity` with an operator token (idempotent for the same key) and returns the
    /// authenticated link.
    pub async fn enroll(
        mut client: FederationClient<Channel>,
        identity: Arc<SiteIdentity>,
        token: &str,
        site_label: &str,
        tap: Option<Arc<dyn WireTap>>,
    ) -> Result<Self, ParticipantError> {
        let request = pb::EnrollRequest {
            token: token.to_string(),
            public_key: identity.public_key().to_vec(),
            site_label: site_label.to_string(),
        };
        if let Some(tap) = &tap {
            tap.outgoing("Enroll", &request.encode_to_vec());
        }
        let participant_id = match client.enroll(request).await {
            Ok(response) => response.into_inner().participant_id,
            // Only the token or key can be wrong here; asking again would not change that.
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
                ) =>
            {
                return Err(ParticipantError::Refused(format!(
                    "enrollment: {} (check enrollment_token in participant.toml)",
                    s.message()
                )));
            }
            Err(s) => return Err(s.into()),
        };
        Ok(Self {
            client,
            identity,
            participant_id,
            tap,
        })
    }

    pub fn participant_id(&self) -> &str {
        &self.participant_id
    }

    /// Signs `unsigned` (a request with its `auth` unset) as this participant, for calls to
    /// the coordinator's other services (the forecast board).
    pub fn authorize<M: Message>(&self, method: &str, unsigned: &M) -> pb::RequestAuth {
        self.identity
            .authorize(&self.participant_id, method, "", 0, unsigned)
    }

    pub(crate) fn send_log<M: Message>(&self, method: &'static str, message: &M) {
        if let Some(tap) = &self.tap {
            tap.outgoing(method, &message.encode_to_vec());
        }
    }

    pub async fn join(&mut self, tag: &str) -> Result<pb::JoinResponse, ParticipantError> {
        let mut request = pb::JoinRequest {
            auth: None,
            tag: tag.to_string(),
        };
        request.auth = Some(self.identity.authorize(
            &self.participant_id,
            proto::method::JOIN,
            "",
            0,
            &request,
        ));
        self.send_log("Join", &request);
        Ok(self.client.join(request).await?.into_inner())
    }

    pub async fn task(
        &mut self,
        federation: &str,
        wait_ms: u32,
    ) -> Result<pb::RoundTask, ParticipantError> {
        let mut request = pb::TaskRequest {
            auth: None,
            federation: federation.to_string(),
            wait_ms,
        };
        request.auth = Some(self.identity.authorize(
            &self.participant_id,
            proto::method::GET_TASK,
            federation,
            0,
            &request,
        ));
        self.send_log("GetTask", &request);
        Ok(self.client.get_task(request).await?.into_inner())
    }

    pub async fn submit(
        &mut self,
        federation: &str,
        round: u64,
        phase: pb::SecAggPhase,
        payload: Vec<u8>,
    ) -> Result<pb::SubmitReceipt, ParticipantError> {
        let mut request = pb::ProtocolSubmission {
            auth: None,
            federation: federation.to_string(),
            round,
            phase: phase as i32,
            payload,
        };
        request.auth = Some(self.identity.authorize(
            &self.participant_id,
            proto::method::SUBMIT_PROTOCOL,
            federation,
            round,
            &request,
        ));
        self.send_log("SubmitProtocol", &request);
        proto::faults::crash_point(&format!("participant:{}", phase_point(phase)));
        Ok(self.client.submit_protocol(request).await?.into_inner())
    }

    /// Streams `data` in chunks of at most [`proto::CHUNK_BYTES`] after a signed header that
    /// announces its length and SHA-256.
    pub async fn upload(
        &mut self,
        federation: &str,
        round: u64,
        element_type: pb::ElementType,
        sample_count: u64,
        data: Vec<u8>,
    ) -> Result<pb::SubmitReceipt, ParticipantError> {
        let mut header = pb::UploadHeader {
            auth: None,
            federation: federation.to_string(),
            round,
            element_type: element_type as i32,
            total_bytes: data.len() as u64,
            sha256: proto::chunk::sha256(&data).to_vec(),
            sample_count,
        };
        header.auth = Some(self.identity.authorize(
            &self.participant_id,
            proto::method::UPLOAD_UPDATE,
            federation,
            round,
            &header,
        ));
        let mut messages = vec![pb::UploadChunk {
            part: Some(upload_chunk::Part::Header(header)),
        }];
        messages.extend(
            proto::chunk::split(Bytes::from(data)).map(|data| pb::UploadChunk {
                part: Some(upload_chunk::Part::Data(data)),
            }),
        );
        for m in &messages {
            self.send_log("UploadUpdate", m);
        }
        proto::faults::crash_point(&format!("participant:{}", upload_point(element_type)));
        // `participant:upload` fires as the stream is read past its header: a site killed
        // halfway through an upload.
        let stream = messages.into_iter().enumerate().map(|(i, m)| {
            if i == 1 {
                proto::faults::crash_point("participant:upload");
            }
            m
        });
        Ok(self
            .client
            .upload_update(tokio_stream::iter(stream))
            .await?
            .into_inner())
    }

    /// Downloads a weights version, checking the announced length and digest against `expected`.
    pub async fn download(
        &mut self,
        federation: &str,
        expected: &pb::WeightsRef,
    ) -> Result<Vec<f32>, ParticipantError> {
        let mut request = pb::DownloadRequest {
            auth: None,
            federation: federation.to_string(),
            version: expected.version,
            aggregate_round: 0,
        };
        request.auth = Some(self.identity.authorize(
            &self.participant_id,
            proto::method::DOWNLOAD_WEIGHTS,
            federation,
            0,
            &request,
        ));
        self.send_log("DownloadWeights", &request);
        let mut stream = self.client.download_weights(request).await?.into_inner();
        let header = match stream.message().await?.and_then(|c| c.part) {
            Some(download_chunk::Part::Header(h)) => h.weights.ok_or_else(|| {
                ParticipantError::Protocol("download header without weights".into())
            })?,
            _ => {
                return Err(ParticipantError::Protocol(
                    "download must start with a header".into(),
                ));
            }
        };
        if header.version != expected.version
            || header.sha256 != expected.sha256
            || header.length != expected.length
        {
            return Err(ParticipantError::Protocol(format!(
                "coordinator sent weights version {} ({} values) instead of the planned version {}",
                header.version, header.length, expected.version
            )));
        }
        let total = header
            .length
            .checked_mul(4)
            .ok_or_else(|| ParticipantError::Protocol("weights length overflows".into()))?;
        let mut data = Reassembly::new(total, &header.sha256, proto::MAX_VECTOR_BYTES, None)?;
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(download_chunk::Part::Data(bytes)) => data.push(&bytes)?,
                _ => {
                    return Err(ParticipantError::Protocol(
                        "only data chunks may follow the header".into(),
                    ));
                }
            }
        }
        Ok(proto::chunk::bytes_to_f32(&data.finish()?)?)
    }

    /// Encrypted mode: downloads the coordinator-signed aggregate of `round`, checking the size
    /// and digest announced in the decryption request.
    pub async fn download_aggregate(
        &mut self,
        federation: &str,
        round: u64,
        step: &pb::HeDecryptStep,
    ) -> Result<Vec<u8>, ParticipantError> {
        let mut request = pb::DownloadRequest {
            auth: None,
            federation: federation.to_string(),
            version: 0,
            aggregate_round: round,
        };
        request.auth = Some(self.identity.authorize(
            &self.participant_id,
            proto::method::DOWNLOAD_WEIGHTS,
            federation,
            0,
            &request,
        ));
        self.send_log("DownloadWeights", &request);
        let mut stream = self.client.download_weights(request).await?.into_inner();
        match stream.message().await?.and_then(|c| c.part) {
            Some(download_chunk::Part::Header(h))
                if h.aggregate_bytes == step.aggregate_bytes
                    && h.aggregate_sha256 == step.aggregate_sha256 => {}
            _ => {
                return Err(ParticipantError::Protocol(
                    "aggregate download header differs from the decryption request".into(),
                ));
            }
        }
        let mut data = Reassembly::new(
            step.aggregate_bytes,
            &step.aggregate_sha256,
            proto::MAX_VECTOR_BYTES,
            None,
        )?;
        while let Some(chunk) = stream.message().await? {
            match chunk.part {
                Some(download_chunk::Part::Data(bytes)) => data.push(&bytes)?,
                _ => {
                    return Err(ParticipantError::Protocol(
                        "only data chunks may follow the header".into(),
                    ));
                }
            }
        }
        Ok(data.finish()?)
    }
}

/// The crash point name of a protocol message (`proto::faults`).
fn phase_point(phase: pb::SecAggPhase) -> &'static str {
    match phase {
        pb::SecAggPhase::Unspecified => "unspecified",
        pb::SecAggPhase::AdvertiseKeys => "advertise_keys",
        pb::SecAggPhase::ShareKeys => "share_keys",
        pb::SecAggPhase::MaskedInput => "masked_input",
        pb::SecAggPhase::Unmask => "unmask",
        pb::SecAggPhase::HeCommit => "he_commit",
        pb::SecAggPhase::HeReveal => "he_reveal",
        pb::SecAggPhase::HeDeal => "he_deal",
        pb::SecAggPhase::HeInput => "he_input",
        pb::SecAggPhase::HeDecrypt => "he_decrypt",
    }
}

/// The crash point before an upload: the phase it answers.
fn upload_point(element: pb::ElementType) -> &'static str {
    match element {
        pb::ElementType::Masked => phase_point(pb::SecAggPhase::MaskedInput),
        pb::ElementType::Ciphertext => phase_point(pb::SecAggPhase::HeInput),
        pb::ElementType::PartialDecryption => phase_point(pb::SecAggPhase::HeDecrypt),
        _ => "plain_input",
    }
}
