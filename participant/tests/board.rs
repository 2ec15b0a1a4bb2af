//! The forecast board over real gRPC: two enrolled participants publish their sites'
//! forecasts, declaring registered model versions (two small plain-protection models run to
//! their first version with fixed updates); a market engine (a forecast client with a board reader token) queries by site, by sector
//! and time range, and the sector total; unenrolled, forged, replayed, impersonating and
//! malformed publishes are refused with clear statuses; only reader tokens read every site, a
//! participant reads its own.

mod common;

use std::sync::Arc;

use common::*;
use coordinator::registry::VersionManifest;
use datasets::Target;
use models::serving::QuantileForecast;
use participant::SiteIdentity;
use participant::board::{BoardEntry, publish_site_forecast, query_own_forecasts, site_forecast};
use participant::client::{FederationLink, WireTap, connect, open_channel};
use proto::forecast::forecast_client::ForecastClient;
use proto::forecast::{PublishSiteForecastRequest, QueryBoardRequest, SiteForecast};
use tonic::Code;

const HOUR: i64 = 3600;

/// The sites a board answer holds, sorted.
fn sites_of(response: proto::forecast::QueryBoardResponse) -> Vec<String> {
    let mut sites: Vec<String> = response.forecasts.into_iter().map(|f| f.site).collect();
    sites.sort();
    sites
}
const STEPS: usize = 24;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A locally computed forecast as `models::serving` returns it: p50 = base + step, a band of
/// -1/+2 kW around it.
fn local_forecast(t0: i64, base: f32) -> QuantileForecast {
    let p50: Vec<f32> = (0..STEPS).map(|i| base + i as f32).collect();
    QuantileForecast {
        timestamps_unix_s: (0..STEPS as i64).map(|i| t0 + i * HOUR).collect(),
        levels: vec![0.1, 0.5, 0.9],
        values_kw: vec![
            p50.iter().map(|v| v - 1.0).collect(),
            p50.clone(),
            p50.iter().map(|v| v + 2.0).collect(),
        ],
    }
}

/// A one-round model of `sector` load that fixed-update participants train to version 1.
pub fn fixed_spec(name: &str, sector: &str) -> String {
    format!(
        r#"
name = "{name}"
target = "load"
sector = "{sector}"
context = 24
horizon = 24
protection = "plain"
rounds = 1

[architecture]
hidden = [4]

[training]
min_participants = 1
"#
    )
}

fn entry(site: &str, sector: &str, issued: i64, version: &VersionManifest) -> BoardEntry {
    BoardEntry {
        site: site.into(),
        sector: sector.into(),
        target: Target::Load,
        model: format!("{}@{}", version.content.model, version.content.version),
        version_id: version.id.clone(),
        issued_unix_s: issued,
        step_s: 3600,
    }
}

async fn enroll(
    coord: &RunningCoordinator,
    label: &str,
    tap: Option<Arc<dyn WireTap>>,
) -> FederationLink {
    let client = connect(&coord.endpoint()).await.unwrap();
    FederationLink::enroll(
        client,
        Arc::new(SiteIdentity::generate().unwrap()),
        TOKEN,
        label,
        tap,
    )
    .await
    .unwrap()
}

fn query(site: &str, sector: &str, from: i64, to: i64) -> QueryBoardRequest {
    QueryBoardRequest {
        sector: sector.into(),
        site: site.into(),
        from_unix_s: from,
        to_unix_s: to,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn participants_publish_and_market_engines_query_the_board() {
    let dir = tempfile::tempdir().unwrap();
    let coord = RunningCoordinator::start_registry(dir.path()).await;
    let res = coord
        .fixed_versions(&fixed_spec("res-load", "residential"), 1)
        .await;
    let com = coord
        .fixed_versions(&fixed_spec("com-load", "commercial"), 1)
        .await;
    let channel = open_channel(&coord.endpoint()).await.unwrap();
    let alice_sent = Arc::new(Methods::default());
    let alice = enroll(&coord, "alice", Some(alice_sent.clone())).await;
    let bob = enroll(&coord, "bob", None).await;

    let issued = now_s();
    // The first step at least an hour ahead: the re-publications below bump `issued` by a few
    // seconds, which must stay before the first step even when the test starts at hh:59:59.
    let t0 = (issued / HOUR + 2) * HOUR;
    let roof_a = site_forecast(
        &entry("roof-a", "residential", issued, &res[0]),
        &local_forecast(t0, 3.0),
    )
    .unwrap();
    let roof_b = site_forecast(
        &entry("roof-b", "residential", issued, &res[0]),
        &local_forecast(t0, 10.0),
    )
    .unwrap();
    let mall = site_forecast(
        &entry("mall", "commercial", issued, &com[0]),
        &local_forecast(t0, 200.0),
    )
    .unwrap();
    let published = publish_site_forecast(&alice, channel.clone(), roof_a.clone())
        .await
        .unwrap();
    assert_eq!(published.participant_id, alice.participant_id());
    assert!(!published.replaced);
    // Only the enrollment and the forecast left alice's site.
    assert_eq!(
        *alice_sent.0.lock().unwrap(),
        ["Enroll", "PublishSiteForecast"]
    );
    for f in [&roof_b, &mall] {
        publish_site_forecast(&bob, channel.clone(), f.clone())
            .await
            .unwrap();
    }

    // The market engine: a board reader token, no enrolled identity.
    let mut market = forecast_client_with(channel.clone(), BOARD_READER);
    let by_site = market
        .query_board(query("roof-a", "", t0 + 2 * HOUR, t0 + 6 * HOUR))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_site.forecasts.len(), 1);
    let got = &by_site.forecasts[0];
    assert_eq!(got.participant_id, alice.participant_id());
    assert_eq!(got.sector, "residential");
    assert_eq!(got.timestamps_unix_s, roof_a.timestamps_unix_s[2..6]);
    assert_eq!(got.p50_kw, roof_a.p50_kw[2..6]);
    assert_eq!(got.p10_kw, roof_a.p10_kw[2..6]);
    assert_eq!(got.p90_kw, roof_a.p90_kw[2..6]);
    assert_eq!(got.version_id, roof_a.version_id);

    let range = (t0, t0 + STEPS as i64 * HOUR);
    let residential = market
        .query_board(query("", "residential", range.0, range.1))
        .await
        .unwrap()
        .into_inner();
    let mut sites: Vec<&str> = residential
        .forecasts
        .iter()
        .map(|f| f.site.as_str())
        .collect();
    sites.sort();
    assert_eq!(sites, ["roof-a", "roof-b"]);

    // Without a reader token nobody reads the board; a wrong token is no better; the
    // operator's token reads it.
    let everything = query("", "", range.0, range.1);
    for mut client in [
        forecast_client_with(channel.clone(), "not-the-board-reader-token"),
        forecast_client_with(channel.clone(), ""),
    ] {
        let err = client.query_board(everything.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
        assert!(err.message().contains("board_reader_tokens"), "{err:?}");
    }
    let err = ForecastClient::new(channel.clone())
        .query_board(everything.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let operator_view = forecast_client_with(channel.clone(), OPERATOR)
        .query_board(everything.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(operator_view.forecasts.len(), 3);

    // A participant reads its own sites by signature, and nobody else's.
    let own = sites_of(
        query_own_forecasts(&bob, channel.clone(), everything.clone())
            .await
            .unwrap(),
    );
    assert_eq!(own, ["mall", "roof-b"]);
    let none = query_own_forecasts(&bob, channel.clone(), query("roof-a", "", range.0, range.1))
        .await
        .unwrap();
    assert!(none.forecasts.is_empty(), "{none:?}");
    let mut alices = everything.clone();
    alices.participant_id = alice.participant_id().to_string();
    let err = query_own_forecasts(&bob, channel.clone(), alices)
        .await
        .unwrap_err();
    let participant::ParticipantError::Status(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("participant_id"), "{status:?}");
    // The signature covers the filters: widening a signed query after signing is refused.
    let mut signed = query("mall", "", range.0, range.1);
    signed.auth = Some(bob.authorize(proto::method::QUERY_BOARD, &signed));
    let mut widened = signed.clone();
    widened.site.clear();
    let err = ForecastClient::new(channel.clone())
        .query_board(widened)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let stranger = SiteIdentity::generate().unwrap();
    let mut forged = query("", "", range.0, range.1);
    forged.auth = Some(stranger.authorize(
        bob.participant_id(),
        proto::method::QUERY_BOARD,
        "",
        0,
        &forged,
    ));
    let err = ForecastClient::new(channel.clone())
        .query_board(forged)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");

    let mut total_request = query("", "residential", range.0, range.1);
    total_request.target = "load".into();
    total_request.total = true;
    let total = market
        .query_board(total_request.clone())
        .await
        .unwrap()
        .into_inner()
        .total
        .unwrap();
    assert_eq!(total.timestamps_unix_s, roof_a.timestamps_unix_s);
    for i in 0..STEPS {
        assert_eq!(total.p50_kw[i], roof_a.p50_kw[i] + roof_b.p50_kw[i]);
        assert_eq!(total.p10_bound_kw[i], roof_a.p10_kw[i] + roof_b.p10_kw[i]);
        assert_eq!(total.p90_bound_kw[i], roof_a.p90_kw[i] + roof_b.p90_kw[i]);
        assert_eq!(total.sites[i], 2);
    }
    // A total needs a target: load and PV do not add.
    total_request.target.clear();
    let err = market.query_board(total_request).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("target"), "{err:?}");
    let err = market
        .query_board(query("", "residential", range.1, range.0))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    // A newer issue replaces the site's forecast; an older one is refused.
    let mut newer = roof_a.clone();
    newer.issued_unix_s += 1;
    newer.p50_kw[0] += 0.5;
    let replaced = publish_site_forecast(&alice, channel.clone(), newer.clone())
        .await
        .unwrap();
    assert!(replaced.replaced);
    let err = publish_site_forecast(&alice, channel.clone(), roof_a.clone())
        .await
        .unwrap_err();
    let participant::ParticipantError::Status(status) = err else {
        panic!("{err:?}")
    };
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let now_a = market
        .query_board(query("roof-a", "", range.0, range.1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(now_a.forecasts[0].p50_kw[0], newer.p50_kw[0]);

    // Malformed forecasts: NaN, crossing quantiles, a step off the grid.
    let refused = |f: SiteForecast| {
        let link = alice.clone();
        let channel = channel.clone();
        async move {
            match publish_site_forecast(&link, channel, f).await.unwrap_err() {
                participant::ParticipantError::Status(s) => s,
                other => panic!("{other:?}"),
            }
        }
    };
    let mut nan = newer.clone();
    nan.issued_unix_s += 1;
    nan.p50_kw[3] = f64::NAN;
    let status = refused(nan).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("p50_kw[3]"), "{status:?}");
    let mut crossing = newer.clone();
    crossing.issued_unix_s += 1;
    crossing.p10_kw[5] = crossing.p90_kw[5] + 1.0;
    let status = refused(crossing).await;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("quantiles[5]"), "{status:?}");
    let mut off_grid = newer.clone();
    off_grid.issued_unix_s += 1;
    off_grid.timestamps_unix_s[7] += 60;
    let status = refused(off_grid).await;
    assert!(
        status.message().contains("timestamps_unix_s[7]"),
        "{status:?}"
    );

    // The declared version must be one the registry holds, of the forecast's target and
    // sector.
    let mut unknown_id = newer.clone();
    unknown_id.issued_unix_s += 1;
    unknown_id.version_id = "ab".repeat(32);
    let status = refused(unknown_id).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(
        status.message().contains("version_id") && status.message().contains(&"ab".repeat(32)),
        "{status:?}"
    );
    let mut unknown_model = newer.clone();
    unknown_model.issued_unix_s += 1;
    unknown_model.model = "no-such-model@1".into();
    let status = refused(unknown_model).await;
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert!(status.message().contains("no-such-model"), "{status:?}");
    let mut wrong_sector = newer.clone();
    wrong_sector.issued_unix_s += 1;
    wrong_sector.sector = "commercial".into();
    let status = refused(wrong_sector).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("sector"), "{status:?}");
    let mut wrong_version = newer.clone();
    wrong_version.issued_unix_s += 1;
    wrong_version.model = "res-load@7".into();
    let status = refused(wrong_version).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("version 7"), "{status:?}");

    // Publishing for someone else.
    let mut impersonation = roof_b.clone();
    impersonation.participant_id = bob.participant_id().to_string();
    let status = refused(impersonation).await;
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Unsigned, unenrolled, forged, tampered and replayed requests.
    let mut raw = ForecastClient::new(channel.clone());
    let unsigned = PublishSiteForecastRequest {
        auth: None,
        forecast: Some(roof_b.clone()),
    };
    let err = raw
        .publish_site_forecast(unsigned.clone())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let stranger = SiteIdentity::generate().unwrap();
    let method = proto::method::PUBLISH_SITE_FORECAST;
    let mut unenrolled = unsigned.clone();
    unenrolled.auth = Some(stranger.authorize("p999999", method, "", 0, &unsigned));
    let err = raw.publish_site_forecast(unenrolled).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("unknown participant"), "{err:?}");
    let mut forged = unsigned.clone();
    forged.auth = Some(stranger.authorize(bob.participant_id(), method, "", 0, &unsigned));
    let err = raw.publish_site_forecast(forged).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("signature"), "{err:?}");
    let mut signed = unsigned.clone();
    signed.auth = Some(bob.authorize(method, &unsigned));
    let mut tampered = signed.clone();
    if let Some(f) = tampered.forecast.as_mut() {
        f.p50_kw[0] += 100.0;
    }
    let err = raw.publish_site_forecast(tampered).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    raw.publish_site_forecast(signed.clone()).await.unwrap();
    let err = raw.publish_site_forecast(signed).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("replayed"), "{err:?}");

    // Nothing refused reached the board.
    let after = market
        .query_board(query("", "", range.0, range.1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.forecasts.len(), 3);
    let roof_b_now = after.forecasts.iter().find(|f| f.site == "roof-b").unwrap();
    assert_eq!(roof_b_now.p50_kw, roof_b.p50_kw);
    assert_eq!(roof_b_now.participant_id, bob.participant_id());
    coord.stop().await;
}

/// One HTTP/1.1 GET to the coordinator's HTTP listener: (status line and headers, body).
async fn http_get(
    addr: std::net::SocketAddr,
    target: &str,
    cookie: Option<&str>,
) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let cookie = cookie.map_or(String::new(), |c| format!("Cookie: {c}\r\n"));
    let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{cookie}\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    socket.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    (head.to_string(), body.to_string())
}

/// Headless Chromium, as CI installs it (Debian `chromium`); `None` where it is missing,
/// which outside CI skips the browser half of the test.
fn chromium() -> Option<std::path::PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium (.ci/run) for the dashboard test"
        );
        eprintln!("SKIPPED the headless Chromium half: no chromium on this machine");
    }
    found
}

/// Runs headless Chromium on `url` with `extra` arguments; returns its stdout.
fn run_chromium(
    binary: &std::path::Path,
    profile: &std::path::Path,
    extra: &[String],
    url: &str,
) -> String {
    let out = std::process::Command::new("timeout")
        .arg("90")
        .arg(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1400",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chromium: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The operators' dashboard: refused without a token, and in headless Chromium after signing
/// in it shows the federation's latest version, the model's versions with their federated
/// scores, and a board forecast drawn as a band.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_federations_versions_and_board_forecasts() {
    let dir = tempfile::tempdir().unwrap();
    let coord = RunningCoordinator::start_registry(dir.path()).await;
    let res = coord
        .fixed_versions(&fixed_spec("res-load", "residential"), 1)
        .await;
    let channel = open_channel(&coord.endpoint()).await.unwrap();
    let alice = enroll(&coord, "alice", None).await;
    let issued = now_s();
    let t0 = (issued / HOUR + 2) * HOUR;
    let roof = site_forecast(
        &entry("roof-a", "residential", issued, &res[0]),
        &local_forecast(t0, 3.0),
    )
    .unwrap();
    publish_site_forecast(&alice, channel.clone(), roof)
        .await
        .unwrap();

    // No token, a wrong one: the login form, never the page; metrics stay open.
    let (head, body) = http_get(coord.http_addr, "/", None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    assert!(body.contains("<form") && !body.contains("roof-a"), "{body}");
    let (head, _) = http_get(coord.http_addr, "/login?token=not-a-token-at-all", None).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, _) = http_get(coord.http_addr, "/", Some("gridfed_dashboard=guess")).await;
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (head, body) = http_get(coord.http_addr, "/metrics", None).await;
    assert!(
        head.starts_with("HTTP/1.1 200") && body.contains("gridfed_"),
        "{head}"
    );
    // A reader token signs in: a cookie that the page accepts.
    let (head, _) = http_get(
        coord.http_addr,
        &format!("/login?token={BOARD_READER}"),
        None,
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 303"), "{head}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: "))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_string();
    assert!(
        head.contains("HttpOnly") && head.contains("SameSite=Strict"),
        "{head}"
    );
    let (head, page) = http_get(coord.http_addr, "/", Some(&cookie)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        page.contains("roof-a") && page.contains("res-load"),
        "{page}"
    );

    let Some(browser) = chromium() else {
        coord.stop().await;
        return;
    };
    let url = format!("http://{}/login?token={BOARD_READER}", coord.http_addr);
    let profile = dir.path().join("chromium-profile");
    let shot = dir.path().join("dashboard.png");
    let (dom, screenshot) = {
        let (browser, profile, url, shot) =
            (browser.clone(), profile.clone(), url.clone(), shot.clone());
        tokio::task::spawn_blocking(move || {
            // The login redirects to the page with the cookie set, as a person's browser does.
            let dom = run_chromium(&browser, &profile, &["--dump-dom".to_string()], &url);
            run_chromium(
                &browser,
                &profile,
                &[format!("--screenshot={}", shot.display())],
                &url,
            );
            (dom, std::fs::read(&shot).unwrap_or_default())
        })
        .await
        .unwrap()
    };
    coord.stop().await;
    // GRIDFED_KEEP_SCREENSHOT=path keeps the picture (docs/dashboard.png comes from here).
    if let Some(keep) = std::env::var_os("GRIDFED_KEEP_SCREENSHOT") {
        std::fs::write(keep, &screenshot).unwrap();
    }
    assert!(dom.contains("<h1>gridfed coordinator</h1>"), "{dom}");
    // The federation of res-load, at its version 1, done.
    let row = dom
        .split("<tr class=\"federation\">")
        .nth(1)
        .expect("a federation row");
    assert!(
        row.contains("res-load") && row.contains("class=\"latest-version\">1<"),
        "{row}"
    );
    assert!(row.contains("class=\"phase\">done<"), "{row}");
    // Its version with the federated score the fixed participants reported.
    let versions = dom
        .split("data-model=\"res-load\"")
        .nth(1)
        .expect("the model's version table");
    let version_row = versions.split("<tr class=\"version\">").nth(1).unwrap();
    let nmae = res[0]
        .content
        .federated_evaluation
        .values()
        .next()
        .unwrap()
        .scores
        .nmae;
    assert!(
        version_row.contains(&format!("{:.1}%", 100.0 * nmae)),
        "{version_row} should show nMAE {nmae}"
    );
    // The accuracy curve above the table: one dot per evaluated version (here the one).
    let curve = dom
        .split("<h2>Model res-load</h2>")
        .nth(1)
        .and_then(|rest| rest.split("data-model=\"res-load\"").next())
        .expect("the model's section");
    assert!(curve.contains("class=\"accuracy\""), "{curve}");
    assert_eq!(
        curve.matches("class=\"version-nmae\"").count(),
        1,
        "{curve}"
    );
    // The board forecast, drawn.
    let figure = dom
        .split("class=\"board-forecast\" data-site=\"roof-a\"")
        .nth(1)
        .expect("roof-a's forecast on the page");
    assert!(
        figure.contains("<polygon class=\"band\"") && figure.contains("<polyline class=\"p50\"")
    );
    assert!(
        screenshot.starts_with(b"\x89PNG") && screenshot.len() > 20_000,
        "{} bytes",
        screenshot.len()
    );
}
