//! One enum over the participant's typed states, for network shells: messages in, messages out.

use ed25519_dalek::VerifyingKey;
use rand::CryptoRng;

use super::envelope::SignedMessage;
use super::identity::ParticipantIdentity;
use super::ids::Phase;
use super::participant::{AdvertisedKeys, AwaitingUnmask, ReadyToMask, Rejected, SharedKeys, join};
use crate::CryptoError;

/// A participant's round, whatever state it is in. A refused message leaves the state as it was.
#[derive(Debug)]
pub enum ParticipantRound {
    AdvertisedKeys(AdvertisedKeys),
    SharedKeys(SharedKeys),
    ReadyToMask(ReadyToMask),
    AwaitingUnmask(AwaitingUnmask),
    /// The unmasking response went out; nothing more is accepted.
    Finished,
}

impl ParticipantRound {
    /// Joins the round of `plan`; returns the round and the key advertisement to send.
    pub fn join(
        identity: ParticipantIdentity,
        coordinator: VerifyingKey,
        plan: &SignedMessage,
        rng: &mut impl CryptoRng,
    ) -> Result<(Self, SignedMessage), CryptoError> {
        let (state, advert) = join(identity, coordinator, plan, rng)?;
        Ok((Self::AdvertisedKeys(state), advert))
    }

    /// The phase of the next message this round accepts from the coordinator, if any.
    #[must_use]
    pub fn expected_phase(&self) -> Option<Phase> {
        match self {
            Self::AdvertisedKeys(_) => Some(Phase::KeyDirectory),
            Self::SharedKeys(_) => Some(Phase::ShareRelay),
            Self::AwaitingUnmask(_) => Some(Phase::UnmaskRequest),
            Self::ReadyToMask(_) | Self::Finished => None,
        }
    }

    /// Handles a coordinator message; returns the reply to send, if the step has one.
    pub fn handle(
        &mut self,
        message: &SignedMessage,
    ) -> Result<Option<SignedMessage>, CryptoError> {
        let got = message.header().phase;
        match std::mem::replace(self, Self::Finished) {
            Self::AdvertisedKeys(state) => self.settle(
                state.handle(message),
                Self::AdvertisedKeys,
                |(next, out)| (Self::SharedKeys(next), Some(out)),
            ),
            Self::SharedKeys(state) => {
                self.settle(state.handle(message), Self::SharedKeys, |next| {
                    (Self::ReadyToMask(next), None)
                })
            }
            Self::AwaitingUnmask(state) => {
                self.settle(state.handle(message), Self::AwaitingUnmask, |out| {
                    (Self::Finished, Some(out))
                })
            }
            state @ Self::ReadyToMask(_) => {
                *self = state;
                Err(CryptoError::UnexpectedPhase {
                    expected: Phase::MaskedInput,
                    got,
                })
            }
            Self::Finished => Err(CryptoError::ProtocolViolation {
                sender: message.header().sender,
                reason: "message after the round finished",
            }),
        }
    }

    /// Masks the encoded update once the shares are in; returns the masked input to send.
    pub fn mask(&mut self, update: &[u32]) -> Result<SignedMessage, CryptoError> {
        match std::mem::replace(self, Self::Finished) {
            Self::ReadyToMask(state) => {
                self.settle(state.mask(update), Self::ReadyToMask, |(next, out)| {
                    (Self::AwaitingUnmask(next), out)
                })
            }
            other => {
                let expected = other.expected_phase();
                *self = other;
                Err(CryptoError::UnexpectedPhase {
                    expected: expected.unwrap_or(Phase::UnmaskRequest),
                    got: Phase::MaskedInput,
                })
            }
        }
    }

    fn settle<S, T, O>(
        &mut self,
        outcome: Result<T, Rejected<S>>,
        restore: impl FnOnce(S) -> Self,
        advance: impl FnOnce(T) -> (Self, O),
    ) -> Result<O, CryptoError> {
        match outcome {
            Ok(value) => {
                let (next, out) = advance(value);
                *self = next;
                Ok(out)
            }
            Err(Rejected { state, error }) => {
                *self = restore(*state);
                Err(error)
            }
        }
    }
}
