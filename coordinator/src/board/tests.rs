use super::*;

const HOUR: i64 = 3600;
const T0: i64 = 1_790_000_000 / HOUR * HOUR;
const NOW: i64 = T0;

fn forecast(participant: &str, site: &str, sector: &str, p50: &[f64]) -> SiteForecast {
    SiteForecast {
        participant_id: participant.into(),
        site: site.into(),
        sector: sector.into(),
        target: Target::Load,
        model: "res-load@3".into(),
        version_id: "ab".repeat(32),
        issued_unix_s: T0 - 60,
        step_s: 3600,
        timestamps_unix_s: (0..p50.len() as i64).map(|i| T0 + i * HOUR).collect(),
        p10_kw: p50.iter().map(|v| v - 1.0).collect(),
        p50_kw: p50.to_vec(),
        p90_kw: p50.iter().map(|v| v + 2.0).collect(),
    }
}

fn field_of(result: Result<(), BoardError>) -> String {
    match result {
        Err(BoardError::Invalid { field, .. }) => field,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn valid_forecast_passes() {
    forecast("p000001", "roof-1", "residential", &[3.0, 4.0])
        .validate(NOW)
        .unwrap();
}

#[test]
fn each_bad_field_is_named() {
    let ok = forecast("p000001", "roof-1", "residential", &[3.0, 4.0, 5.0]);
    type Breakage = Box<dyn Fn(&mut SiteForecast)>;
    let cases: Vec<(&str, Breakage)> = vec![
        ("p50_kw[1]", Box::new(|f| f.p50_kw[1] = f64::NAN)),
        ("p90_kw[2]", Box::new(|f| f.p90_kw[2] = f64::INFINITY)),
        ("quantiles[0]", Box::new(|f| f.p10_kw[0] = 10.0)),
        ("p90_kw", Box::new(|f| f.p90_kw.pop().map(drop).unwrap())),
        (
            "timestamps_unix_s[2]",
            Box::new(|f| f.timestamps_unix_s[2] += 1),
        ),
        (
            "timestamps_unix_s[0]",
            Box::new(|f| {
                for t in &mut f.timestamps_unix_s {
                    *t += 60;
                }
            }),
        ),
        ("step_s", Box::new(|f| f.step_s = 7)),
        ("site", Box::new(|f| f.site = "a/b".into())),
        ("sector", Box::new(|f| f.sector = String::new())),
        ("model", Box::new(|f| f.model = "no spaces allowed".into())),
        ("version_id", Box::new(|f| f.version_id = "xyz".into())),
        ("issued_unix_s", Box::new(|f| f.issued_unix_s = T0 + 1)),
        (
            "timestamps_unix_s",
            Box::new(|f| {
                f.timestamps_unix_s.clear();
                f.p10_kw.clear();
                f.p50_kw.clear();
                f.p90_kw.clear();
            }),
        ),
    ];
    for (field, break_it) in cases {
        let mut f = ok.clone();
        break_it(&mut f);
        assert_eq!(field_of(f.validate(NOW)), field, "{f:?}");
    }
    // A forecast issued far in the future of the coordinator's clock.
    let mut f = ok.clone();
    f.issued_unix_s = T0;
    assert_eq!(field_of(f.validate(T0 - 3 * HOUR)), "issued_unix_s");
}

#[test]
fn negative_values_only_for_load() {
    let mut f = forecast("p000001", "roof-1", "solar", &[-1.0, 0.5]);
    f.validate(NOW).unwrap(); // net load may be negative
    f.target = Target::Pv;
    assert_eq!(field_of(f.validate(NOW)), "p10_kw[0]");
}

#[test]
fn horizon_is_bounded_by_seven_days() {
    let steps = (MAX_HORIZON_S / HOUR) as usize;
    let at_limit = forecast("p000001", "s", "x", &vec![1.0; steps]);
    at_limit.validate(NOW).unwrap();
    let over = forecast("p000001", "s", "x", &vec![1.0; steps + 1]);
    assert_eq!(field_of(over.validate(NOW)), "timestamps_unix_s");
}

#[test]
fn newer_issue_replaces_older_is_refused_and_queries_filter_and_clip() {
    let dir = tempfile::tempdir().unwrap();
    let board = Board::open(&dir.path().join("board.redb")).unwrap();
    let a = forecast("p000001", "roof-1", "residential", &[1.0, 2.0, 3.0]);
    let b = forecast("p000002", "roof-9", "residential", &[10.0, 20.0]);
    let c = forecast("p000002", "mall", "commercial", &[100.0, 100.0, 100.0]);
    for f in [&a, &b, &c] {
        assert_eq!(board.publish(f, NOW).unwrap(), store::Published::New);
    }
    let mut newer = a.clone();
    newer.issued_unix_s += 30;
    newer.p50_kw[0] = 1.5;
    assert_eq!(
        board.publish(&newer, NOW).unwrap(),
        store::Published::Replaced
    );
    assert!(matches!(
        board.publish(&a, NOW),
        Err(BoardError::Stale { .. })
    ));
    assert_eq!(board.get("p000001", "roof-1").unwrap(), Some(newer.clone()));

    let range = |from: i64, to: i64| BoardQuery {
        from_unix_s: T0 + from * HOUR,
        to_unix_s: T0 + to * HOUR,
        ..BoardQuery::default()
    };
    let residential = BoardQuery {
        sector: Some("residential".into()),
        ..range(1, 3)
    };
    let got = board.query(&residential).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].timestamps_unix_s, vec![T0 + HOUR, T0 + 2 * HOUR]);
    assert_eq!(got[0].p50_kw, vec![2.0, 3.0]);
    assert_eq!(got[1].p50_kw, vec![20.0]);

    let total = SectorTotal::sum(&got);
    assert_eq!(total.timestamps_unix_s, vec![T0 + HOUR, T0 + 2 * HOUR]);
    assert_eq!(total.p50_kw, vec![22.0, 3.0]);
    assert_eq!(total.p10_bound_kw, vec![20.0, 2.0]);
    assert_eq!(total.p90_bound_kw, vec![26.0, 5.0]);
    assert_eq!(total.sites, vec![2, 1]);

    let by_site = BoardQuery {
        site: Some("mall".into()),
        ..range(0, 1)
    };
    let got = board.query(&by_site).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].participant_id, "p000002");
    assert_eq!(got[0].p50_kw, vec![100.0]);
    // Outside every forecast, and a participant's own prefix.
    assert!(board.query(&range(10, 20)).unwrap().is_empty());
    let mine = BoardQuery {
        participant_id: Some("p000002".into()),
        ..range(0, 48)
    };
    assert_eq!(board.query(&mine).unwrap().len(), 2);
    // Ranges must be non-empty and bounded.
    assert!(matches!(
        board.query(&range(2, 2)),
        Err(BoardError::Invalid { .. })
    ));
    assert!(matches!(
        board.query(&range(0, 24 * 32)),
        Err(BoardError::Invalid { .. })
    ));
}

#[test]
fn sites_per_participant_are_capped_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("board.redb");
    {
        let board = Board::open(&path).unwrap();
        for i in 0..MAX_SITES_PER_PARTICIPANT {
            board
                .publish(&forecast("p000001", &format!("s{i}"), "x", &[1.0]), NOW)
                .unwrap();
        }
        let over = forecast("p000001", "one-more", "x", &[1.0]);
        assert!(matches!(
            board.publish(&over, NOW),
            Err(BoardError::TooManySites(_))
        ));
        // Another participant is not affected, and replacing an existing site still works.
        board
            .publish(&forecast("p000002", "s0", "x", &[1.0]), NOW)
            .unwrap();
        board
            .publish(&forecast("p000001", "s0", "x", &[2.0]), NOW)
            .unwrap();
    }
    let board = Board::open(&path).unwrap();
    assert_eq!(
        board.get("p000001", "s0").unwrap().unwrap().p50_kw,
        vec![2.0]
    );
}

#[test]
fn declared_version_must_match_the_registry() {
    let registered = RegisteredVersion {
        model: "res-load",
        version: 3,
        target: Target::Load,
        sector: datasets::Sector::Residential,
    };
    let ok = forecast("p000001", "roof-1", "residential", &[3.0]);
    ok.check_version(&registered).unwrap();
    let by_alias = SiteForecast {
        model: "res-load".into(),
        ..ok.clone()
    };
    by_alias.check_version(&registered).unwrap();
    let field = |f: SiteForecast| field_of(f.check_version(&registered));
    assert_eq!(
        field(SiteForecast {
            model: "res-load@2".into(),
            ..ok.clone()
        }),
        "model"
    );
    assert_eq!(
        field(SiteForecast {
            model: "pv-roof@3".into(),
            ..ok.clone()
        }),
        "model"
    );
    assert_eq!(
        field(SiteForecast {
            target: Target::Pv,
            ..ok.clone()
        }),
        "target"
    );
    assert_eq!(
        field(SiteForecast {
            sector: "commercial".into(),
            ..ok.clone()
        }),
        "sector"
    );
}
