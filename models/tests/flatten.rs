//! The flat parameter vector: fixed order, bit-exact round trip, training resumes after loading.

mod common;

use models::{
    ForecasterConfig, ModelError, from_flat, load_flat, named_parameters, to_flat, train_local,
    training_device,
};

fn config() -> ForecasterConfig {
    ForecasterConfig::new(220, 24)
        .with_hidden(vec![16, 8])
        .with_seed(3)
}

#[test]
fn order_and_names_follow_parameter_specs() {
    let config = config();
    let model = config.init(&training_device()).unwrap();
    let named = named_parameters(&model).unwrap();
    let specs = config.parameter_specs();
    let names: Vec<_> = named
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    let expected: Vec<_> = specs
        .iter()
        .map(|s| (s.name.clone(), s.shape.clone()))
        .collect();
    assert_eq!(names, expected);
    assert_eq!(names[0], ("hidden.0.weight".to_string(), vec![220, 16]));
    assert_eq!(
        names.last().unwrap(),
        &("head.bias".to_string(), vec![3 * 24])
    );
    let flat = to_flat(&model).unwrap();
    assert_eq!(flat.len(), config.num_params());
    assert_eq!(flat.len(), 220 * 16 + 16 + 16 * 8 + 8 + 8 * 72 + 72);
    let concatenated: Vec<f32> = named.into_iter().flat_map(|p| p.values).collect();
    assert_eq!(concatenated, flat);
}

#[test]
fn round_trip_is_bit_exact() {
    let config = config();
    let device = training_device();
    let original = to_flat(&config.init(&device).unwrap()).unwrap();
    // Values a float round trip through text or f64 could disturb.
    let mut flat: Vec<f32> = original
        .iter()
        .enumerate()
        .map(|(i, v)| v * (1.0 + i as f32 * 1e-7))
        .collect();
    flat[0] = f32::MIN_POSITIVE;
    flat[1] = -0.0;
    flat[2] = 1.0e-40; // subnormal
    let loaded = from_flat(&config, &flat, &device).unwrap();
    let back = to_flat(&loaded).unwrap();
    assert_eq!(back.len(), flat.len());
    assert!(
        back.iter()
            .zip(&flat)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    // Loading into an existing model keeps its structure and gives the same bits.
    let reloaded = load_flat(config.init(&device).unwrap(), &flat).unwrap();
    assert!(
        to_flat(&reloaded)
            .unwrap()
            .iter()
            .zip(&flat)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

#[test]
fn wrong_length_is_a_typed_error() {
    let config = config();
    let flat = vec![0.0; config.num_params() - 1];
    match from_flat(&config, &flat, &training_device()) {
        Err(ModelError::ParameterCount { expected, actual }) => {
            assert_eq!(
                (expected, actual),
                (config.num_params(), config.num_params() - 1)
            );
        }
        other => panic!("expected ParameterCount, got {other:?}"),
    }
    let model = config.init(&training_device()).unwrap();
    assert!(matches!(
        load_flat(model, &[1.0; 5]),
        Err(ModelError::ParameterCount { .. })
    ));
}

#[test]
fn training_continues_after_loading() {
    let (train, _) = common::site("s", 40, 35, 48, 1);
    let config = ForecasterConfig::new(train.n_features, train.horizon)
        .with_hidden(vec![32])
        .with_seed(5);
    let start = to_flat(&config.init(&training_device()).unwrap()).unwrap();
    let first = train_local(&config, &start, &train, 2).unwrap();
    // Continue from the loaded parameters: loss keeps falling and parameters move.
    let second = train_local(&config, &first.params, &train, 2).unwrap();
    assert_eq!(second.samples, train.len());
    assert!(
        second.final_loss < first.final_loss,
        "{} !< {}",
        second.final_loss,
        first.final_loss
    );
    assert_ne!(second.params, first.params);
}
