//! The documentation's examples are what the code accepts.

/// The configuration examples of docs/federation.md parse as the configs they document (the
/// uncommented lines; commented options are checked by uncommenting the hierarchy and storage
/// sections too).
#[test]
fn documented_configs_parse() {
    let docs = include_str!("../docs/federation.md");
    let block = |heading: &str| -> String {
        let after = docs
            .split_once(heading)
            .unwrap_or_else(|| panic!("docs/federation.md has no `{heading}`"))
            .1;
        let start = after.find("```toml\n").expect("a toml block") + "```toml\n".len();
        let body = &after[start..];
        body[..body.find("```").expect("closed block")].to_string()
    };
    let coordinator = block("### coordinator.toml");
    let config = coordinator::CoordinatorConfig::from_toml(&coordinator)
        .unwrap_or_else(|e| panic!("coordinator.toml example: {e}"));
    assert_eq!(config.federations.len(), 1);
    assert!(config.operator_tokens.is_empty() && config.tls.is_some());
    // The commented sections, switched on, parse too.
    let uncommented = coordinator
        .replace("# [storage]", "[storage]")
        .replace("# backend = \"postgres\"", "backend = \"postgres\"")
        .replace("# url = ", "url = ")
        .replace("# [federation.hierarchy]", "[federation.hierarchy]")
        .replace("# min_sites_per_feeder", "min_sites_per_feeder")
        .replace("# min_feeders", "min_feeders");
    // [storage] must come before [[federation]] for the keys to land in it; the example
    // places it so.
    let config = coordinator::CoordinatorConfig::from_toml(&uncommented)
        .unwrap_or_else(|e| panic!("coordinator.toml example with its options: {e}"));
    assert!(matches!(
        config.storage,
        coordinator::storage::StorageConfig::Postgres { .. }
    ));
    assert_eq!(
        config.federations[0]
            .hierarchy
            .as_ref()
            .map(|h| h.min_sites_per_feeder),
        Some(5)
    );
    let participant = block("### participant.toml");
    participant::ParticipantConfig::from_toml(&participant)
        .unwrap_or_else(|e| panic!("participant.toml example: {e}"));
}
