//! How a masked round's selected sites form SecAgg+ groups: one group of every site (flat), or
//! one per feeder (`[federation.hierarchy]`), each with parameters that never unmask a sum
//! over fewer survivors than its floor.

use std::collections::{BTreeMap, HashMap};

use crypto::secagg::SecAggParams;

use super::masked::secagg_error;
use super::{RoundError, RoundPlan};

/// Secure-aggregation parameters for a group of `n`: the configured neighbours and threshold,
/// or the crypto crate's suggestion, never unmasking a sum over fewer than `floor` survivors.
pub(super) fn params_for(
    plan: &RoundPlan,
    n: usize,
    floor: u32,
    vector_len: u32,
) -> Result<SecAggParams, RoundError> {
    let spec = &plan.spec;
    let mut params = if spec.neighbours > 0 {
        SecAggParams {
            vector_len,
            neighbours: spec.neighbours,
            threshold: spec.threshold.max(spec.neighbours / 2 + 1),
            min_survivors: 0,
        }
    } else if n >= 4 {
        SecAggParams::suggested(n, vector_len).map_err(secagg_error)?
    } else {
        let k = (n as u32).saturating_sub(1);
        SecAggParams {
            vector_len,
            neighbours: k,
            threshold: k,
            min_survivors: 0,
        }
    };
    params.min_survivors = params.min_survivors.max(params.threshold + 1).max(floor);
    params.validate(n).map_err(secagg_error)?;
    Ok(params)
}

/// A selected site: its participant id and Ed25519 verifying key.
pub(super) type SiteKey = (String, [u8; 32]);

/// The selected sites in groups, each with its feeder's name: one group of all (flat), or one
/// per feeder with at least `min_sites_per_feeder` selected sites.
pub(super) fn partition(
    plan: &RoundPlan,
    keys: &[SiteKey],
    feeders: &HashMap<String, String>,
) -> Vec<(String, Vec<SiteKey>)> {
    let Some(hierarchy) = &plan.spec.hierarchy else {
        return vec![(String::new(), keys.to_vec())];
    };
    let mut by_feeder: BTreeMap<&str, Vec<SiteKey>> = BTreeMap::new();
    for (name, key) in keys {
        let feeder = feeders.get(name).map_or("", String::as_str);
        by_feeder
            .entry(feeder)
            .or_default()
            .push((name.clone(), *key));
    }
    by_feeder
        .into_iter()
        .filter(|(feeder, sites)| {
            let enough = sites.len() >= hierarchy.min_sites_per_feeder as usize;
            if !enough {
                tracing::info!(federation = %plan.federation, round = plan.round,
                    feeder = %feeder, selected = sites.len(),
                    "feeder below min_sites_per_feeder: its sites sit this round out");
            }
            enough
        })
        .map(|(feeder, sites)| (feeder.to_string(), sites))
        .collect()
}
