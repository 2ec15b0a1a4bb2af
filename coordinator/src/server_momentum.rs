//! Server momentum over the aggregate (FedAvgM, Hsu et al. 2019): the coordinator keeps a
//! velocity `v <- beta * v + mean_update` and moves the global model by `lr * v`.
//!
//! Why: with a few local steps per round, plain FedAvg moves the global model by the average of
//! short, noisy local trajectories and needs many rounds; momentum accumulates the consistent
//! direction across rounds. It only ever touches the aggregate, which the coordinator learns
//! anyway, so it costs no privacy. The velocity is part of the federation's durable state (an
//! artifact next to the weights), so a restarted coordinator continues the same trajectory.

/// Velocity update and step; returns the new global weights. `velocity` is created (zeros) on
/// first use and must have the model's length afterwards.
pub fn step(
    global: &[f32],
    mean_update: &[f32],
    velocity: &mut Vec<f32>,
    momentum: f32,
    learning_rate: f32,
) -> Vec<f32> {
    if velocity.len() != global.len() {
        *velocity = vec![0.0; global.len()];
    }
    global
        .iter()
        .zip(mean_update)
        .zip(velocity.iter_mut())
        .map(|((g, d), v)| {
            *v = momentum * *v + d;
            g + learning_rate * *v
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_momentum_unit_rate_is_plain_fedavg() {
        let mut v = Vec::new();
        let w = step(&[1.0, 2.0], &[0.5, -1.0], &mut v, 0.0, 1.0);
        assert_eq!(w, vec![1.5, 1.0]);
    }

    #[test]
    fn a_constant_update_accelerates_towards_its_geometric_sum() {
        let (mut w, mut v) = (vec![0.0f32], Vec::new());
        for _ in 0..200 {
            w = step(&w, &[0.01], &mut v, 0.9, 1.0);
        }
        // The velocity converges to d / (1 - beta) = 0.1 per round.
        assert!((v[0] - 0.1).abs() < 1e-4, "{v:?}");
        assert!(w[0] > 19.0, "{w:?}");
    }
}
