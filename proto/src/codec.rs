//! The codec every generated client and server uses: prost's encoding, with one change to
//! decoding.
//!
//! tonic-prost answers bytes that do not parse as the expected message with `INTERNAL`, which
//! reads as a server bug and tells a client nothing. For a server, a request that does not parse
//! is the caller's fault, so it is `INVALID_ARGUMENT`, naming the message type; the server keeps
//! serving. Size limits are enforced before decoding (tonic answers `OUT_OF_RANGE` there).

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost encoding; decoding errors are `INVALID_ARGUMENT` (see the module docs).
#[derive(Debug, Clone)]
pub struct StrictCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for StrictCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for StrictCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = StrictDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        StrictDecoder { _pd: PhantomData }
    }
}

/// Decodes `U`, refusing what does not parse with `INVALID_ARGUMENT`.
#[derive(Debug, Clone)]
pub struct StrictDecoder<U> {
    _pd: PhantomData<U>,
}

impl<U: Message + Default> Decoder for StrictDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        decode_message::<U>(buf).map(Some)
    }
}

/// Decodes one message the way the services do, mapping a parse error to the status a caller
/// receives. Public so that fuzz targets and tests exercise exactly this path.
pub fn decode_message<U: Message + Default>(buf: impl prost::bytes::Buf) -> Result<U, Status> {
    U::decode(buf).map_err(|e| {
        let name = std::any::type_name::<U>()
            .rsplit("::")
            .next()
            .unwrap_or("message");
        Status::invalid_argument(format!("malformed {name} message: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::JoinRequest;

    #[test]
    fn bytes_that_do_not_parse_are_invalid_argument_naming_the_message() {
        // Field 1, wire type 2 (length-delimited), declared length 100, 1 byte present.
        let status = decode_message::<JoinRequest>(&[0x0a, 100, 0][..]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("malformed JoinRequest message"),
            "{status}"
        );
    }

    #[test]
    fn a_valid_message_decodes() {
        let request = JoinRequest {
            tag: "site-a".into(),
            ..Default::default()
        };
        let back = decode_message::<JoinRequest>(&request.encode_to_vec()[..]).unwrap();
        assert_eq!(back, request);
    }
}
