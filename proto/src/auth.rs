//! What a request signature covers.
//!
//! A participant signs, with its enrolled Ed25519 key, the bytes of [`signing_bytes`]: a domain
//! tag, the gRPC method, its participant id, the federation, the round the call is about (0 when
//! none), a strictly increasing nonce and the SHA-256 of the request encoded with its `auth`
//! field unset ([`payload_digest`]). Changing any field after signing, replaying the call, or
//! replaying its signature on another method, round or federation breaks verification.

use prost::Message;
use sha2::{Digest, Sha256};

/// Domain separation tag of version 1 request signatures.
pub const DOMAIN: &[u8] = b"gridfed/federation/v1/request\0";

/// Metadata of an `UNAUTHENTICATED` answer to a nonce at or below what the coordinator last
/// accepted (or its start time): that floor, in decimal. A participant whose clock is behind
/// the coordinator's (or was stepped back) moves its nonce counter above it and is accepted on
/// the next try, instead of being refused until its clock catches up.
pub const NONCE_FLOOR_METADATA: &str = "gridfed-nonce-floor";

/// The context a signature binds a request to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedContext<'a> {
    pub method: &'a str,
    pub participant_id: &'a str,
    pub federation: &'a str,
    pub round: u64,
    pub nonce: u64,
    pub payload_digest: [u8; 32],
}

/// SHA-256 of a request's protobuf encoding; call it with the `auth` field unset.
pub fn payload_digest<M: Message>(request: &M) -> [u8; 32] {
    Sha256::digest(request.encode_to_vec()).into()
}

/// The exact bytes that are signed: each string length-prefixed (u32 BE), integers u64 BE.
pub fn signing_bytes(ctx: &SignedContext<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(DOMAIN.len() + 96 + ctx.method.len());
    out.extend_from_slice(DOMAIN);
    for field in [ctx.method, ctx.participant_id, ctx.federation] {
        out.extend_from_slice(&(field.len() as u32).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out.extend_from_slice(&ctx.round.to_be_bytes());
    out.extend_from_slice(&ctx.nonce.to_be_bytes());
    out.extend_from_slice(&ctx.payload_digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{JoinRequest, RequestAuth};

    fn ctx(federation: &str) -> SignedContext<'_> {
        SignedContext {
            method: crate::method::JOIN,
            participant_id: "p1",
            federation,
            round: 3,
            nonce: 7,
            payload_digest: [1; 32],
        }
    }

    #[test]
    fn fields_cannot_slide_between_strings() {
        // "ab" + "c" must not sign like "a" + "bc".
        let a = SignedContext {
            participant_id: "ab",
            federation: "c",
            ..ctx("")
        };
        let b = SignedContext {
            participant_id: "a",
            federation: "bc",
            ..ctx("")
        };
        assert_ne!(signing_bytes(&a), signing_bytes(&b));
        assert_ne!(signing_bytes(&ctx("x")), signing_bytes(&ctx("y")));
    }

    #[test]
    fn digest_ignores_nothing_but_auth() {
        let mut req = JoinRequest {
            auth: None,
            tag: "residential-load".into(),
        };
        let unsigned = payload_digest(&req);
        req.auth = Some(RequestAuth {
            participant_id: "p".into(),
            nonce: 1,
            signature: vec![0; 64],
        });
        assert_ne!(payload_digest(&req), unsigned);
        req.auth = None;
        assert_eq!(payload_digest(&req), unsigned);
        req.tag = "rooftop-pv".into();
        assert_ne!(payload_digest(&req), unsigned);
    }
}
