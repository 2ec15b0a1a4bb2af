//! The SecAgg+ neighbour graph: who masks with whom, derived from a public seed.
//!
//! Members are placed on a ring in an order drawn from the round's public seed (sorted by a keyed
//! hash of their ids, a uniformly random permutation that nobody can bias after the seed is
//! fixed), and each is joined to the `k / 2` nearest on either side: the Harary graph of Bell et
//! al. 2020. An odd `k` adds the diametrically opposite member when the ring is even, and rounds
//! the half-width up when it is odd (degree `k + 1`: an odd-degree regular graph on an odd ring
//! does not exist). With `k >= n - 1` the graph is complete. The relation is symmetric, so
//! pairwise masks cancel.

use std::collections::HashMap;

use super::ids::ParticipantId;

/// The neighbour relation over the members who advertised keys.
#[derive(Debug, Clone)]
pub struct NeighbourGraph {
    /// Each member's neighbours, in increasing id order (computed once: the protocol asks often).
    adjacency: HashMap<ParticipantId, Vec<ParticipantId>>,
}

impl NeighbourGraph {
    /// The graph over `members` (duplicates are ignored) for neighbour count `k`.
    #[must_use]
    pub fn new(seed: &[u8; 32], members: &[ParticipantId], k: u32) -> Self {
        let mut ring: Vec<ParticipantId> = members.to_vec();
        ring.sort_unstable();
        ring.dedup();
        let mut keyed: Vec<(u64, ParticipantId)> = ring
            .iter()
            .map(|&id| {
                let hash = blake3::keyed_hash(seed, &id.0.to_le_bytes());
                let mut first = [0u8; 8];
                first.copy_from_slice(&hash.as_bytes()[..8]);
                (u64::from_le_bytes(first), id)
            })
            .collect();
        keyed.sort_unstable();
        ring = keyed.into_iter().map(|(_, id)| id).collect();
        let n = ring.len();
        let k = usize::try_from(k).unwrap_or(usize::MAX);
        let complete = k.saturating_add(1) >= n;
        let mut half = k / 2;
        let mut distances = Vec::new();
        if !complete {
            if k % 2 == 1 && n % 2 == 1 {
                half += 1;
            } else if k % 2 == 1 {
                distances.push(n / 2);
            }
            distances.extend(1..=half);
        }
        let adjacency = ring
            .iter()
            .enumerate()
            .map(|(at, &id)| {
                let mut hood: Vec<ParticipantId> = if complete {
                    ring.iter().copied().filter(|&other| other != id).collect()
                } else {
                    distances
                        .iter()
                        .flat_map(|&d| [ring[(at + d) % n], ring[(at + n - d) % n]])
                        .collect()
                };
                hood.sort_unstable();
                hood.dedup();
                (id, hood)
            })
            .collect();
        Self { adjacency }
    }

    /// Number of members.
    #[must_use]
    pub fn len(&self) -> usize {
        self.adjacency.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.adjacency.is_empty()
    }

    #[must_use]
    pub fn contains(&self, id: ParticipantId) -> bool {
        self.adjacency.contains_key(&id)
    }

    /// The neighbours of `id` in increasing id order; empty when `id` is not a member.
    #[must_use]
    pub fn neighbours(&self, id: ParticipantId) -> &[ParticipantId] {
        self.adjacency.get(&id).map_or(&[], Vec::as_slice)
    }
}

impl NeighbourGraph {
    /// Number of connected components of the subgraph induced by `members` (sorted, unique).
    /// Survivors split into several components would let the coordinator unmask each
    /// component's sum separately, so a round needs exactly one.
    #[must_use]
    pub fn components(&self, members: &[ParticipantId]) -> usize {
        let mut seen = vec![false; members.len()];
        let mut components = 0;
        for start in 0..members.len() {
            if seen[start] {
                continue;
            }
            components += 1;
            seen[start] = true;
            let mut stack = vec![members[start]];
            while let Some(id) = stack.pop() {
                for &neighbour in self.neighbours(id) {
                    if let Ok(at) = members.binary_search(&neighbour)
                        && !seen[at]
                    {
                        seen[at] = true;
                        stack.push(neighbour);
                    }
                }
            }
        }
        components
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u32) -> Vec<ParticipantId> {
        (0..n).map(|i| ParticipantId(i * 3 + 1)).collect()
    }

    #[test]
    fn graph_is_symmetric_with_the_promised_degree() {
        for (n, k, degree) in [
            (50, 3, 3),
            (51, 3, 4),
            (100, 14, 14),
            (7, 6, 6),
            (5, 9, 4),
            (20, 2, 2),
        ] {
            let members = ids(n);
            let graph = NeighbourGraph::new(&[9; 32], &members, k);
            for &a in &members {
                let hood = graph.neighbours(a);
                assert_eq!(hood.len(), degree, "n={n} k={k}");
                assert!(!hood.contains(&a));
                for &b in hood {
                    assert!(graph.neighbours(b).contains(&a), "asymmetric edge {a}-{b}");
                }
            }
        }
    }

    #[test]
    fn the_seed_changes_the_graph_and_member_order_does_not() {
        let members = ids(40);
        let mut reversed = members.clone();
        reversed.reverse();
        let a = NeighbourGraph::new(&[1; 32], &members, 4);
        let b = NeighbourGraph::new(&[1; 32], &reversed, 4);
        let c = NeighbourGraph::new(&[2; 32], &members, 4);
        assert_eq!(a.neighbours(members[0]), b.neighbours(members[0]));
        assert!(members.iter().any(|&m| a.neighbours(m) != c.neighbours(m)));
        assert!(a.neighbours(ParticipantId(0)).is_empty());
    }

    #[test]
    fn removing_a_cut_splits_the_survivors() {
        let members = ids(12);
        let graph = NeighbourGraph::new(&[3; 32], &members, 2);
        assert_eq!(graph.components(&members), 1);
        // On a ring of degree 2, removing two non-adjacent members leaves two arcs.
        let (a, b) = (members[0], graph.neighbours(members[0])[0]);
        let far = members
            .iter()
            .copied()
            .find(|&m| {
                m != a
                    && m != b
                    && !graph.neighbours(a).contains(&m)
                    && !graph.neighbours(b).contains(&m)
            })
            .unwrap();
        let survivors: Vec<ParticipantId> = members
            .iter()
            .copied()
            .filter(|&m| m != a && m != far)
            .collect();
        assert_eq!(graph.components(&survivors), 2);
        assert_eq!(graph.components(&[]), 0);
    }
}
