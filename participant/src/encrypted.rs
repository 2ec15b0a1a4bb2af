//! The participant's encrypted-round state (`crypto::he`): committee key generation when this
//! site sits on the committee, encryption of the clipped, weighted update under the collective
//! key, and partial decryption of the aggregate. Every coordinator message is checked here;
//! the daemon only moves bytes.

use crypto::he::{
    Ciphertext, CollectivePublicKey, Committee, CommitteeMember, DecryptorSet, FragmentExchange,
    HeError, LimbCodec, MemberIndex, NoiseSource, PublicKeyShare, ShareCommitments, SigningKey,
    VerifyingKey, verify_exchange_key,
};
use crypto::secagg::{FederationId, ParticipantId};
use prost::Message;
use proto::v1 as pb;

use crate::ParticipantError;

fn he_err(what: &str) -> impl Fn(HeError) -> ParticipantError + '_ {
    move |e| ParticipantError::Crypto(format!("{what}: {e}"))
}

fn decode<M: Message + Default>(what: &str, payload: &[u8]) -> Result<M, ParticipantError> {
    M::decode(payload).map_err(|e| ParticipantError::Protocol(format!("{what}: {e}")))
}

/// This site's committee seat: its member state and fragment exchange key.
struct Seat {
    member: CommitteeMember,
    exchange: FragmentExchange,
    /// Every member's verified X25519 key, in member order (from the key directory).
    peers: Vec<[u8; 32]>,
}

/// One encrypted round in progress on this site.
pub struct EncryptedSession {
    committee: Committee,
    participant: ParticipantId,
    signing: SigningKey,
    /// Signs the aggregate the coordinator asks to decrypt.
    coordinator: VerifyingKey,
    seat: Option<Seat>,
    commitments: Option<ShareCommitments>,
    key: Option<CollectivePublicKey>,
    /// Set once the HE_INPUT step was checked (and a member's key share accepted).
    prepared: bool,
    codec: LimbCodec,
    values: usize,
    noise: NoiseSource,
    dp: Option<crate::contribution::RoundDp>,
}

impl std::fmt::Debug for EncryptedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSession")
            .field("round", &self.committee.round())
            .field("member", &self.seat.as_ref().map(|s| s.member.member()))
            .finish_non_exhaustive()
    }
}

impl EncryptedSession {
    /// Checks the round's committee; a member also samples its key share. Returns the session
    /// and, for a member, its HeCommitment to submit.
    pub fn join(
        signing: &SigningKey,
        participant: u32,
        coordinator_key: &[u8],
        task: &pb::TrainTask,
    ) -> Result<(Self, Option<Vec<u8>>), ParticipantError> {
        let coordinator = coordinator_key
            .try_into()
            .ok()
            .and_then(|key: [u8; 32]| VerifyingKey::from_bytes(&key).ok())
            .ok_or_else(|| {
                ParticipantError::Protocol("coordinator_key is not an Ed25519 key".into())
            })?;
        let committee = Committee::decode(&task.he_committee).map_err(he_err("he_committee"))?;
        if committee.federation() != FederationId::from_name(&task.federation)
            || committee.round() != task.round
        {
            return Err(ParticipantError::Protocol(
                "he_committee is bound to another federation or round".into(),
            ));
        }
        if (committee.plan().max_summands().0 as usize) < task.roster.len() {
            return Err(ParticipantError::Protocol(
                "he_committee plan has fewer summands than the roster".into(),
            ));
        }
        let values = crate::contribution::vector_len(task)?;
        let dp = crate::contribution::round_dp(task);
        let headroom = dp.map_or(0, crate::contribution::RoundDp::headroom);
        let codec =
            LimbCodec::with_headroom(committee.plan(), task.clip, task.max_weight, headroom)
                .map_err(he_err("plan"))?;
        let mut noise = NoiseSource::from_os().map_err(he_err("randomness"))?;
        let participant = ParticipantId(participant);
        let (seat, commitment) = match committee.member_index(participant) {
            Some(index) => {
                let member =
                    CommitteeMember::new(committee.clone(), index, signing.clone(), &mut noise)
                        .map_err(he_err("committee seat"))?;
                let exchange = FragmentExchange::generate().map_err(he_err("exchange key"))?;
                let message = pb::HeCommitment {
                    commitment: member.commitment().to_vec(),
                    exchange_key: exchange.advertisement(&member),
                };
                let seat = Seat {
                    member,
                    exchange,
                    peers: Vec::new(),
                };
                (Some(seat), Some(message.encode_to_vec()))
            }
            None => (None, None),
        };
        Ok((
            Self {
                committee,
                participant,
                signing: signing.clone(),
                coordinator,
                seat,
                commitments: None,
                key: None,
                prepared: false,
                codec,
                values,
                noise,
                dp,
            },
            commitment,
        ))
    }

    /// The committee member index of this site, if it sits on the committee.
    pub fn member(&self) -> Option<MemberIndex> {
        self.committee.member_index(self.participant)
    }

    fn seat(&mut self) -> Result<&mut Seat, ParticipantError> {
        self.seat
            .as_mut()
            .ok_or_else(|| ParticipantError::Protocol("committee step for a non-member".into()))
    }

    fn frames(list: &[Vec<u8>]) -> Vec<&[u8]> {
        list.iter().map(Vec::as_slice).collect()
    }

    /// HE_REVEAL: verifies every commitment and exchange key; returns this member's public key
    /// share frame.
    pub fn reveal(&mut self, payload: &[u8]) -> Result<Vec<u8>, ParticipantError> {
        let directory: pb::HeKeyDirectory = decode("HeKeyDirectory", payload)?;
        let commitments =
            ShareCommitments::collect(&self.committee, &Self::frames(&directory.commitments))
                .map_err(he_err("commitments"))?;
        let m = self.committee.seats().len();
        if directory.exchange_keys.len() != m {
            return Err(ParticipantError::Protocol(format!(
                "exchange_keys has {} entries for {m} members",
                directory.exchange_keys.len()
            )));
        }
        let peers = directory
            .exchange_keys
            .iter()
            .zip(1u16..)
            .map(|(advert, index)| verify_exchange_key(&self.committee, MemberIndex(index), advert))
            .collect::<Result<Vec<_>, _>>()
            .map_err(he_err("exchange_keys"))?;
        let seat = self.seat()?;
        seat.peers = peers;
        let share = seat
            .member
            .reveal_public_share(&commitments)
            .map_err(he_err("reveal"))?
            .to_vec();
        self.commitments = Some(commitments);
        Ok(share)
    }

    fn collective_key(
        &self,
        commitments: &ShareCommitments,
        shares: &[Vec<u8>],
    ) -> Result<CollectivePublicKey, ParticipantError> {
        let opened = shares
            .iter()
            .map(|frame| PublicKeyShare::open(frame, &self.committee, commitments))
            .collect::<Result<Vec<_>, _>>()
            .map_err(he_err("shares"))?;
        CollectivePublicKey::combine(&self.committee, &opened).map_err(he_err("collective key"))
    }

    /// HE_DEAL: checks the key shares, then Shamir-shares this member's secret, each fragment
    /// sealed to its recipient. Returns the HeFragments to submit.
    pub fn deal(&mut self, payload: &[u8]) -> Result<Vec<u8>, ParticipantError> {
        let message: pb::HeKeyShares = decode("HeKeyShares", payload)?;
        let commitments = self
            .commitments
            .clone()
            .ok_or_else(|| ParticipantError::Protocol("deal before reveal".into()))?;
        self.key = Some(self.collective_key(&commitments, &message.shares)?);
        let mut noise = NoiseSource::from_os().map_err(he_err("randomness"))?;
        let seat = self.seat()?;
        let dealt = seat.member.deal(&mut noise).map_err(he_err("deal"))?;
        let mut fragments = Vec::with_capacity(dealt.len());
        for (recipient, frame) in dealt {
            let peer = seat
                .peers
                .get(usize::from(recipient.0).wrapping_sub(1))
                .ok_or_else(|| ParticipantError::Protocol("no exchange key for a member".into()))?;
            fragments.push(pb::HeSealedFragment {
                dealer: u32::from(seat.member.member().0),
                recipient: u32::from(recipient.0),
                sealed: seat
                    .exchange
                    .seal(&seat.member, recipient, peer, &frame)
                    .map_err(he_err("seal fragment"))?,
            });
        }
        Ok(pb::HeFragments { fragments }.encode_to_vec())
    }

    /// HE_INPUT: recomputes and checks the collective key; a member opens and accepts the
    /// fragments addressed to it (its share of the collective secret).
    pub fn prepare_input(&mut self, payload: &[u8]) -> Result<(), ParticipantError> {
        let step: pb::HeInputStep = decode("HeInputStep", payload)?;
        let commitments =
            ShareCommitments::collect(&self.committee, &Self::frames(&step.commitments))
                .map_err(he_err("commitments"))?;
        let key = self.collective_key(&commitments, &step.shares)?;
        if self.key.as_ref().is_some_and(|k| k.id() != key.id()) {
            return Err(ParticipantError::Protocol(
                "the collective key changed between phases".into(),
            ));
        }
        if let Some(seat) = self.seat.as_mut() {
            let mut opened = Vec::with_capacity(step.fragments.len());
            for fragment in &step.fragments {
                let dealer = u16::try_from(fragment.dealer)
                    .ok()
                    .filter(|&d| fragment.recipient == u32::from(seat.member.member().0) && d > 0)
                    .ok_or_else(|| {
                        ParticipantError::Protocol("fragments: wrong dealer or recipient".into())
                    })?;
                let peer = seat
                    .peers
                    .get(usize::from(dealer) - 1)
                    .ok_or_else(|| ParticipantError::Protocol("fragments.dealer".into()))?;
                opened.push(
                    seat.exchange
                        .open(&seat.member, MemberIndex(dealer), peer, &fragment.sealed)
                        .map_err(he_err("fragment"))?,
                );
            }
            let frames: Vec<&[u8]> = opened.iter().map(|f| f.as_slice()).collect();
            seat.member
                .accept_fragments(&frames)
                .map_err(he_err("fragments"))?;
        }
        self.key = Some(key);
        self.prepared = true;
        Ok(())
    }

    /// True once the HE_INPUT step was taken: the collective key is known and, for a member,
    /// its share of the collective secret is in.
    pub fn ready(&self) -> bool {
        self.prepared
    }

    /// Encodes `update` weighted by `weight` (limb by limb) and encrypts it; returns the signed
    /// ciphertext frame to upload.
    pub fn encrypt(&mut self, update: &[f32], weight: u32) -> Result<Vec<u8>, ParticipantError> {
        let key = self
            .key
            .as_ref()
            .ok_or_else(|| ParticipantError::Protocol("no collective key yet".into()))?;
        if update.len() != self.values {
            return Err(ParticipantError::Protocol(format!(
                "update has {} values, the round {}",
                update.len(),
                self.values
            )));
        }
        let mut words = self
            .codec
            .codec()
            .encode_weighted(update, weight)
            .map_err(|e| ParticipantError::Crypto(format!("encode: {e}")))?;
        if let Some(dp) = self.dp {
            dp.add_noise(self.codec.codec(), &mut words, update.len())?;
        }
        let slots = self.codec.split_words(&words);
        let ciphertext = key
            .encrypt(&slots, &mut self.noise)
            .map_err(he_err("encrypt"))?;
        Ok(ciphertext.seal(&self.signing))
    }

    /// Parses an HE_DECRYPT request; checks this member is in its decryption set.
    pub fn decrypt_request(&self, payload: &[u8]) -> Result<pb::HeDecryptStep, ParticipantError> {
        let step: pb::HeDecryptStep = decode("HeDecryptStep", payload)?;
        let member = self
            .member()
            .ok_or_else(|| ParticipantError::Protocol("decrypt request to a non-member".into()))?;
        if step.attempt == 0 {
            return Err(ParticipantError::Protocol("attempt must start at 1".into()));
        }
        if !step.decryptors.contains(&u32::from(member.0)) {
            return Err(ParticipantError::Protocol(
                "decryptors does not include this member".into(),
            ));
        }
        if step.aggregate_bytes != Ciphertext::frame_len(self.codec.slots(self.values)) as u64 {
            return Err(ParticipantError::Protocol(
                "aggregate_bytes differs from the round's ciphertext size".into(),
            ));
        }
        Ok(step)
    }

    /// Opens the coordinator-signed aggregate and returns this member's signed partial
    /// decryption for the requested set. The member refuses beyond its decryption budget.
    pub fn partial_decrypt(
        &mut self,
        step: &pb::HeDecryptStep,
        aggregate: &[u8],
    ) -> Result<Vec<u8>, ParticipantError> {
        let key = self
            .key
            .clone()
            .ok_or_else(|| ParticipantError::Protocol("no collective key".into()))?;
        let slots = self.codec.slots(self.values);
        let aggregate = Ciphertext::open(aggregate, &self.coordinator, &key, slots)
            .map_err(he_err("aggregate"))?;
        let members = step
            .decryptors
            .iter()
            .map(|&m| u16::try_from(m).map(MemberIndex))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ParticipantError::Protocol("decryptors out of range".into()))?;
        let set =
            DecryptorSet::new(self.committee.plan(), &members).map_err(he_err("decryptors"))?;
        let mut noise = NoiseSource::from_os().map_err(he_err("randomness"))?;
        let seat = self.seat()?;
        seat.member
            .partial_decrypt(&key, &aggregate, &set, &mut noise)
            .map_err(he_err("partial decryption"))
    }
}
