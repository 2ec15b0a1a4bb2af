//! The participant's last two states: masking the update, then answering the unmasking request.

use std::collections::BTreeMap;
use std::fmt;

use super::super::envelope::SignedMessage;
use super::super::graph::NeighbourGraph;
use super::super::ids::{ParticipantId, Phase, SecretKind};
use super::super::messages::{MaskedInput, RevealedShare, UnmaskRequest, UnmaskResponse};
use super::super::prg::{MaskStream, apply_masks_le, le_words_mut, mask_into};
use super::super::share_box::ShareBundle;
use super::{Context, Rejected};
use crate::CryptoError;

/// Masks derived (the X25519 secrets and the seed are gone); waiting for the local update.
pub struct ReadyToMask {
    pub(super) ctx: Context,
    pub(super) graph: NeighbourGraph,
    pub(super) streams: Vec<MaskStream>,
    pub(super) held: BTreeMap<ParticipantId, ShareBundle>,
}

impl ReadyToMask {
    /// The number of live neighbours this participant masks with.
    #[must_use]
    pub fn live_neighbours(&self) -> usize {
        self.held.len()
    }

    /// Masks the encoded update (self mask plus one pairwise mask per live neighbour, using all
    /// rayon threads) and returns the signed masked input.
    pub fn mask(self, update: &[u32]) -> Result<(AwaitingUnmask, SignedMessage), Rejected<Self>> {
        let expected = self.ctx.params.vector_len as usize;
        if update.len() != expected {
            let error = CryptoError::LengthMismatch {
                expected,
                actual: update.len(),
            };
            return Err(Rejected {
                state: Box::new(self),
                error,
            });
        }
        // Copy and mask straight into the payload, one cache-hot pass per rayon task (the
        // portable path for big-endian targets or unaligned buffers copies first).
        let mut payload = MaskedInput::zeroed(update.len());
        match le_words_mut(&mut payload[MaskedInput::HEADER_LEN..]) {
            Some(words) => mask_into(words, update, &self.streams),
            None => {
                payload = MaskedInput::encode(update);
                apply_masks_le(&mut payload[MaskedInput::HEADER_LEN..], &self.streams);
            }
        }
        let message = self.ctx.sign(Phase::MaskedInput, payload);
        Ok((
            AwaitingUnmask {
                ctx: self.ctx,
                graph: self.graph,
                held: self.held,
            },
            message,
        ))
    }
}

/// Masked input sent; waiting for the unmasking request.
pub struct AwaitingUnmask {
    ctx: Context,
    graph: NeighbourGraph,
    held: BTreeMap<ParticipantId, ShareBundle>,
}

impl AwaitingUnmask {
    /// Answers the unmasking request with exactly one share per live neighbour: of its self-mask
    /// seed if it is listed as a survivor, of its pairwise mask key if listed as dropped. A
    /// request that would reveal both, or leaves a neighbour's status open, is refused. The state
    /// is consumed: a participant answers once per round.
    pub fn handle(self, request: &SignedMessage) -> Result<SignedMessage, Rejected<Self>> {
        match self.reveal(request) {
            Ok(message) => Ok(message),
            Err(error) => Err(Rejected {
                state: Box::new(self),
                error,
            }),
        }
    }

    fn reveal(&self, request: &SignedMessage) -> Result<SignedMessage, CryptoError> {
        let ctx = &self.ctx;
        let me = ctx.me();
        ctx.expect_from_coordinator(request, Phase::UnmaskRequest)?;
        let UnmaskRequest { survivors, dropped } = UnmaskRequest::decode(request.payload())?;
        let refuse = |reason| {
            Err(CryptoError::RefusedReveal {
                participant: me,
                reason,
            })
        };
        if survivors.len() < ctx.params.min_survivors as usize {
            return refuse("fewer survivors than the plan's minimum");
        }
        if survivors.binary_search(&me).is_err() {
            return refuse("request says this participant's input is not in the sum");
        }
        if survivors.iter().any(|id| dropped.binary_search(id).is_ok()) {
            return refuse("a participant is listed both as survivor and as dropped");
        }
        // Survivors split into groups would let each group's sum be unmasked on its own.
        if survivors.iter().any(|id| !self.graph.contains(*id))
            || self.graph.components(&survivors) != 1
        {
            return refuse("survivors are not one connected group of advertised participants");
        }
        let mut shares = Vec::with_capacity(self.held.len());
        for (&owner, bundle) in &self.held {
            let (kind, share) = if survivors.binary_search(&owner).is_ok() {
                (SecretKind::SelfMaskSeed, bundle.self_seed.clone())
            } else if dropped.binary_search(&owner).is_ok() {
                (SecretKind::PairwiseMaskKey, bundle.mask_key.clone())
            } else {
                return refuse("request leaves a neighbour's status open");
            };
            shares.push(RevealedShare { owner, kind, share });
        }
        Ok(ctx.sign(Phase::UnmaskResponse, UnmaskResponse { shares }.encode()))
    }
}

redacted_debug!(ReadyToMask, AwaitingUnmask);
