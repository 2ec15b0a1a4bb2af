//! Same seed, same bits; another seed, other weights.

mod common;

use models::{ForecasterConfig, train, train_local};

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn same_seed_gives_bit_identical_parameters() {
    let (data, _) = common::site("s", 30, 25, 48, 2);
    let config = ForecasterConfig::new(data.n_features, data.horizon)
        .with_hidden(vec![32, 16])
        .with_dropout(0.1)
        .with_epochs(3)
        .with_batch_size(64)
        .with_seed(11);
    let a = train(&config, &data).unwrap();
    let b = train(&config, &data).unwrap();
    assert_eq!(a.report.train_loss, b.report.train_loss);
    assert_eq!(
        bits(&a.forecaster.to_flat().unwrap()),
        bits(&b.forecaster.to_flat().unwrap())
    );

    let other = train(&config.clone().with_seed(12), &data).unwrap();
    assert_ne!(
        bits(&a.forecaster.to_flat().unwrap()),
        bits(&other.forecaster.to_flat().unwrap())
    );
}

#[test]
fn local_training_is_deterministic() {
    let (data, _) = common::site("s", 20, 18, 48, 4);
    let config = ForecasterConfig::new(data.n_features, data.horizon)
        .with_hidden(vec![16])
        .with_proximal_mu(0.5);
    let global = models::to_flat(&config.init(&models::training_device()).unwrap()).unwrap();
    let a = train_local(&config, &global, &data, 2).unwrap();
    let b = train_local(&config, &global, &data, 2).unwrap();
    assert_eq!(bits(&a.params), bits(&b.params));
    assert_eq!(a.final_loss.to_bits(), b.final_loss.to_bits());
}
