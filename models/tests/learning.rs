//! The MLP learns: it beats persistence on a learnable signal, FedProx pulls towards the
//! global model, and the fleet evaluation reports every model per site and pooled.

mod common;

use datasets::Target;
use models::{
    ErrorSums, ForecasterConfig, ModelKind, StepSelection, TrainingMode, evaluate_fleet, fine_tune,
    persistence, site_errors, train, train_local,
};

#[test]
fn mlp_beats_persistence_on_a_daily_cycle() {
    let (train_set, test) = common::site("s", 120, 100, 48, 21);
    let config = ForecasterConfig::new(train_set.n_features, 24)
        .with_hidden(vec![64, 64])
        .with_epochs(15);
    let trained = train(&config, &train_set).unwrap();
    assert!(trained.report.best_epoch >= 1 && trained.report.epochs_run <= 15);
    assert!(trained.report.validation_loss.iter().all(|l| l.is_finite()));
    let mlp = site_errors(
        &test,
        &trained.forecaster.predict(&test).unwrap(),
        StepSelection::All,
    )
    .unwrap();
    let naive = site_errors(&test, &persistence(&test).unwrap(), StepSelection::All).unwrap();
    let (mlp, naive) = (
        ErrorSums::pooled(&mlp).metrics(),
        ErrorSums::pooled(&naive).metrics(),
    );
    assert!(
        mlp.skill_vs(&naive) > 0.4,
        "MLP MAE {} vs persistence {}",
        mlp.mae_kw,
        naive.mae_kw
    );
    let coverage = mlp.coverage.unwrap();
    assert!(
        (0.6..0.95).contains(&coverage),
        "p10-p90 coverage {coverage}"
    );
}

#[test]
fn fedprox_keeps_local_weights_near_the_global_model() {
    let (data, _) = common::site("s", 30, 28, 48, 5);
    let config = ForecasterConfig::new(data.n_features, 24).with_hidden(vec![32]);
    let global = models::to_flat(&config.init(&models::training_device()).unwrap()).unwrap();
    let distance = |params: &[f32]| {
        params
            .iter()
            .zip(&global)
            .map(|(a, b)| (a - b).powi(2))
            .sum::<f32>()
    };
    let plain = train_local(&config, &global, &data, 2).unwrap();
    let prox = train_local(&config.clone().with_proximal_mu(10.0), &global, &data, 2).unwrap();
    assert_eq!(plain.samples, data.len());
    assert!(distance(&prox.params) < distance(&plain.params));
}

#[test]
fn fleet_report_has_every_model_per_site_and_pooled() {
    let sites: Vec<_> = (0..3)
        .map(|i| common::site(&format!("site-{i}"), 60, 50, 168, 40 + i))
        .collect();
    let (train_sets, test_sets): (Vec<_>, Vec<_>) = sites.into_iter().unzip();
    let config = ForecasterConfig::new(train_sets[0].n_features, 24)
        .with_hidden(vec![32])
        .with_epochs(4);
    for mode in [TrainingMode::Centralized, TrainingMode::Local] {
        let report = evaluate_fleet(Target::Load, &train_sets, &test_sets, mode, &config).unwrap();
        assert_eq!(report.rows.len(), 6 * 4, "{mode:?}");
        assert!(report.skipped.is_empty());
        assert_eq!(
            report.mlp_training.len(),
            if mode == TrainingMode::Local { 3 } else { 1 }
        );
        for kind in [
            ModelKind::Persistence,
            ModelKind::SeasonalNaiveWeek,
            ModelKind::Ridge,
            ModelKind::Mlp,
        ] {
            let row = report.overall(kind).unwrap();
            assert_eq!(row.metrics.steps, report.test_samples * 24);
            assert!(row.daylight.is_none());
        }
        let persistence = report.overall(ModelKind::Persistence).unwrap();
        assert_eq!(persistence.skill, 0.0);
        let ridge = report.overall(ModelKind::Ridge).unwrap();
        assert!(ridge.skill > 0.3, "ridge skill {}", ridge.skill);
        assert!(ridge.metrics.coverage.is_some());
        serde_json::to_string(&report).unwrap();
    }
    let mut wrong = config.clone();
    wrong.n_features += 1;
    assert!(matches!(
        evaluate_fleet(
            Target::Load,
            &train_sets,
            &test_sets,
            TrainingMode::Local,
            &wrong
        ),
        Err(models::ModelError::LayoutMismatch(_))
    ));
}

#[test]
fn refit_retrains_on_all_samples_deterministically() {
    let (data, test) = common::site("s", 40, 34, 48, 13);
    let config = ForecasterConfig::new(data.n_features, 24)
        .with_hidden(vec![32])
        .with_epochs(4)
        .with_refit(true);
    let a = train(&config, &data).unwrap();
    let b = train(&config, &data).unwrap();
    let kept = train(&config.clone().with_refit(false), &data).unwrap();
    assert_eq!(
        a.forecaster.to_flat().unwrap(),
        b.forecaster.to_flat().unwrap()
    );
    assert_eq!(a.report.best_epoch, kept.report.best_epoch);
    assert_ne!(
        a.forecaster.to_flat().unwrap(),
        kept.forecaster.to_flat().unwrap()
    );
    let forecast = a.forecaster.predict(&test).unwrap();
    let naive = persistence(&test).unwrap();
    let mlp =
        ErrorSums::pooled(&site_errors(&test, &forecast, StepSelection::All).unwrap()).metrics();
    let base =
        ErrorSums::pooled(&site_errors(&test, &naive, StepSelection::All).unwrap()).metrics();
    assert!(
        mlp.skill_vs(&base) > 0.3,
        "refit model skill {}",
        mlp.skill_vs(&base)
    );
}

#[test]
fn fine_tuning_improves_a_poor_start_and_never_worsens_a_good_one() {
    let (data, _) = common::site("s", 60, 56, 48, 9);
    let config = ForecasterConfig::new(data.n_features, 24)
        .with_hidden(vec![32])
        .with_epochs(8);
    let fresh = models::to_flat(&config.init(&models::training_device()).unwrap()).unwrap();
    let tuned = fine_tune(&config, &fresh, &data).unwrap();
    // From random weights the site's data help: some epoch beats the starting point.
    assert!(tuned.report.best_epoch >= 1, "{:?}", tuned.report);
    let tuned_params = tuned.forecaster.to_flat().unwrap();
    assert_ne!(tuned_params, fresh);

    // A rate so large that every epoch is worse: the starting weights are kept, bit for bit.
    let wild = config.clone().with_learning_rate(0.5).with_patience(2);
    let kept = fine_tune(&wild, &tuned_params, &data).unwrap();
    assert_eq!(kept.report.best_epoch, 0, "{:?}", kept.report);
    let kept_params = kept.forecaster.to_flat().unwrap();
    assert_eq!(kept_params, tuned_params);
}
