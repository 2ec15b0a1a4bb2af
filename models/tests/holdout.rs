//! Federated evaluation scores: what a site measures on its holdout matches the kW metrics of
//! `models::metrics`, the shared vector is bounded and flags clamping, and the fleet decoding
//! reads it back.

mod common;

use datasets::Target;
use models::holdout::{MAX_SCORE_WEIGHT, SCORE_CLIP, SCORE_SLOTS};
use models::{
    ErrorSums, FleetScores, ForecasterConfig, HoldoutScores, StepSelection, persistence,
    site_errors, train,
};

#[test]
fn holdout_scores_are_the_sites_normalized_kw_metrics() {
    let (train_set, test) = common::site("s", 60, 50, 48, 14);
    let config = ForecasterConfig::new(train_set.n_features, 24)
        .with_hidden(vec![16])
        .with_epochs(3);
    let trained = train(&config, &train_set).unwrap();
    let weights = trained.forecaster.to_flat().unwrap();
    let scores = HoldoutScores::measure(&config, &weights, &test, Target::Load).unwrap();

    let forecast = trained.forecaster.predict(&test).unwrap();
    let model = ErrorSums::pooled(&site_errors(&test, &forecast, StepSelection::All).unwrap());
    let naive = ErrorSums::pooled(
        &site_errors(&test, &persistence(&test).unwrap(), StepSelection::All).unwrap(),
    );
    let (m, p) = (model.metrics(), naive.metrics());
    assert_eq!(scores.windows as usize, test.origins.len());
    assert!((scores.nmae - m.nmae).abs() < 1e-12);
    assert!((scores.nmse.sqrt() - m.nrmse).abs() < 1e-12);
    assert!((scores.npinball - m.pinball_kw / model.mean_abs_actual()).abs() < 1e-12);
    assert_eq!(Some(scores.coverage), m.coverage);
    assert!((scores.persistence_nmae - p.nmae).abs() < 1e-12);
    // A trained model on a learnable signal removes some of persistence's error.
    assert!(scores.nmae < scores.persistence_nmae, "{scores:?}");
}

#[test]
fn a_holdout_of_several_sites_is_refused() {
    let (a, _) = common::site("a", 20, 20, 48, 2);
    let (b, _) = common::site("b", 20, 20, 48, 2);
    let both = datasets::SampleSet::concat(&[a.clone(), b]).unwrap();
    let config = ForecasterConfig::new(a.n_features, 24).with_hidden(vec![8]);
    let weights = models::to_flat(&config.init(&models::inference_device()).unwrap()).unwrap();
    let err = HoldoutScores::measure(&config, &weights, &both, Target::Load).unwrap_err();
    assert!(err.to_string().contains("2 sites"), "{err}");
}

#[test]
fn shared_vector_is_bounded_flags_clamping_and_decodes() {
    let scores = HoldoutScores {
        windows: 5_000,
        nmae: 0.2,
        nmse: 12.0,
        npinball: 0.08,
        coverage: 0.8,
        persistence_nmae: 0.4,
    };
    let (vector, weight) = scores.to_shared();
    assert_eq!(vector.len(), SCORE_SLOTS);
    assert!(vector.iter().all(|v| (0.0..=SCORE_CLIP).contains(v)));
    assert_eq!(vector[1], SCORE_CLIP, "nMSE clamped");
    assert_eq!(vector[5], 1.0, "clamping flagged");
    assert_eq!(weight, MAX_SCORE_WEIGHT, "a site's weight is capped");

    let fleet = FleetScores::from_weighted_mean(&vector, 40, 2).unwrap();
    assert!((fleet.nmae - 0.2).abs() < 1e-6);
    assert!((fleet.nrmse - f64::from(SCORE_CLIP).sqrt()).abs() < 1e-6);
    assert!((fleet.skill.unwrap() - 0.5).abs() < 1e-6);
    assert_eq!(
        (
            fleet.sites,
            fleet.windows,
            fleet.abstained,
            fleet.saturated_share
        ),
        (2, 40, 0, 1.0)
    );

    // One site of weight 40 scores, one abstains (weight 1): the abstainer is taken back out.
    let (abstain, one) = models::holdout::abstention();
    assert_eq!((abstain[SCORE_SLOTS - 1], one), (1.0, 1));
    assert!(abstain[..SCORE_SLOTS - 1].iter().all(|v| *v == 0.0));
    let mixed: Vec<f32> = vector
        .iter()
        .zip(&abstain)
        .map(|(s, a)| (40.0 * s + a) / 41.0)
        .collect();
    let mixed_fleet = FleetScores::from_weighted_mean(&mixed, 41, 2).unwrap();
    assert_eq!(
        (
            mixed_fleet.sites,
            mixed_fleet.windows,
            mixed_fleet.abstained
        ),
        (1, 40, 1)
    );
    assert!((mixed_fleet.nmae - 0.2).abs() < 1e-6);
    assert!((mixed_fleet.coverage - 0.8).abs() < 1e-6);
    let err = FleetScores::from_weighted_mean(&abstain, 3, 3).unwrap_err();
    assert!(err.to_string().contains("none of the 3 sites"), "{err}");

    let mut clean = scores;
    clean.nmse = 0.05;
    assert_eq!(clean.to_shared().0[5], 0.0);
    assert!(FleetScores::from_weighted_mean(&vector[..SCORE_SLOTS - 1], 1, 1).is_err());
    let mut nan = vector.clone();
    nan[2] = f32::NAN;
    assert!(FleetScores::from_weighted_mean(&nan, 1, 1).is_err());
    let mut no_reference = vector;
    no_reference[4] = 0.0;
    assert_eq!(
        FleetScores::from_weighted_mean(&no_reference, 1, 1)
            .unwrap()
            .skill,
        None
    );
}
