//! The coordinator's HTTP/1.1 listener (`metrics_listen`): `GET /metrics` for Prometheus,
//! and the read-only dashboard for operators at `/`.
//!
//! The dashboard shows every site's board forecasts, so it needs the same right as reading
//! the board: an operator or board reader token. A browser presents it once at
//! `/login?token=...` (or through the form the page shows) and keeps it in an HttpOnly,
//! SameSite=Strict cookie. The listener is plain HTTP: bind it to loopback or an operations
//! network, as one does for a metrics port (docs/federation.md, "Dashboard").

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::auth::token_accepted;
use crate::board::Board;
use crate::dashboard::{DashboardSnapshot, render};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::registry::Registry;

const COOKIE: &str = "gridfed_dashboard";
/// The request head is read up to this size (we need its first line and the Cookie header).
const MAX_HEAD: usize = 8192;

/// What the dashboard reads, and who may see it.
#[derive(Clone)]
pub struct DashboardSource {
    pub hub: Arc<Mutex<Hub>>,
    pub registry: Arc<Registry>,
    pub board: Arc<Board>,
    /// Operator and board reader tokens.
    pub tokens: Arc<Vec<String>>,
}

/// Serves `/metrics` (and the dashboard when `dashboard` is set) on `listener` until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    dashboard: Option<DashboardSource>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (mut socket, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            () = &mut shutdown => return Ok(()),
        };
        let metrics = metrics.clone();
        let dashboard = dashboard.clone();
        tokio::spawn(async move {
            let head = read_head(&mut socket).await;
            let response = respond(&head, &metrics, dashboard).await;
            let _ = socket.write_all(&response).await;
            let _ = socket.shutdown().await;
        });
    }
}

async fn read_head(socket: &mut tokio::net::TcpStream) -> String {
    let mut head = vec![0u8; MAX_HEAD];
    let mut len = 0;
    while len < head.len() {
        match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut head[len..])).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => len += n,
        }
        if head[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&head[..len]).into_owned()
}

/// A parsed request head: method, path, query and the cookie we care about.
#[derive(Debug, Default, PartialEq, Eq)]
struct RequestHead {
    method: String,
    path: String,
    query: String,
    token_cookie: Option<String>,
}

fn parse_head(head: &str) -> RequestHead {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let token_cookie = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, value)| value.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_string());
    RequestHead {
        method,
        path: path.to_string(),
        query: query.to_string(),
        token_cookie,
    }
}

/// `%XX` and `+` decoded; `None` for broken escapes or non-UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Everything but unreserved characters as `%XX` (a cookie value that [`percent_decode`]
/// restores exactly).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .and_then(|(_, v)| percent_decode(v))
}

fn response(status: &str, content_type: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'\r\n\
         {extra_headers}Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn login_page(message: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gridfed \
         coordinator</title></head><body><h1>gridfed coordinator</h1><p id=\"login-message\">{message}</p>\
         <form method=\"get\" action=\"/login\"><label>Operator or board reader token \
         <input type=\"password\" name=\"token\" autocomplete=\"off\"></label> \
         <button type=\"submit\">Open the dashboard</button></form></body></html>\n"
    )
}

async fn respond(head: &str, metrics: &Metrics, dashboard: Option<DashboardSource>) -> Vec<u8> {
    let request = parse_head(head);
    const HTML: &str = "text/html; charset=utf-8";
    if request.method != "GET" {
        return response(
            "405 Method Not Allowed",
            "text/plain",
            "Allow: GET\r\n",
            "GET only\n",
        );
    }
    match (request.path.as_str(), dashboard) {
        ("/metrics", _) => response("200 OK", "text/plain; version=0.0.4", "", &metrics.render()),
        ("/" | "/login", None) => response(
            "404 Not Found",
            "text/plain",
            "",
            "no dashboard: configure operator_tokens or board_reader_tokens\n",
        ),
        ("/login", Some(d)) => {
            let token = query_value(&request.query, "token").unwrap_or_default();
            if token_accepted(&d.tokens, &token) {
                // The cookie holds the token itself: HttpOnly keeps it from scripts (the
                // page has none), SameSite=Strict from other sites' requests.
                let cookie = format!(
                    "Set-Cookie: {COOKIE}={}; HttpOnly; SameSite=Strict; Path=/\r\nLocation: /\r\n",
                    percent_encode(&token)
                );
                response("303 See Other", HTML, &cookie, "")
            } else {
                tracing::warn!("dashboard login with a wrong token");
                response(
                    "401 Unauthorized",
                    HTML,
                    "",
                    &login_page("That token is not an operator or board reader token."),
                )
            }
        }
        ("/", Some(d)) => {
            let token = request
                .token_cookie
                .as_deref()
                .and_then(percent_decode)
                .unwrap_or_default();
            if !token_accepted(&d.tokens, &token) {
                return response(
                    "401 Unauthorized",
                    HTML,
                    "",
                    &login_page(
                        "The dashboard shows every site's forecasts: sign in with a token.",
                    ),
                );
            }
            let now_s = (crate::clock::wall_ms() / 1000) as i64;
            let page = tokio::task::spawn_blocking(move || {
                render(&DashboardSnapshot::read(
                    &d.hub,
                    &d.registry,
                    &d.board,
                    now_s,
                ))
            })
            .await;
            match page {
                Ok(page) => response("200 OK", HTML, "", &page),
                Err(e) => {
                    tracing::error!(error = %e, "dashboard rendering failed");
                    response(
                        "500 Internal Server Error",
                        "text/plain",
                        "",
                        "dashboard failed\n",
                    )
                }
            }
        }
        _ => response("404 Not Found", "text/plain", "", "not found\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_gives_path_query_and_our_cookie() {
        let head = "GET /login?token=abc%2Bdef&x=1 HTTP/1.1\r\nHost: h\r\n\
                    cookie: other=1; gridfed_dashboard=s3cr%21t\r\n\r\n";
        let r = parse_head(head);
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/login");
        assert_eq!(query_value(&r.query, "token").as_deref(), Some("abc+def"));
        assert_eq!(r.token_cookie.as_deref(), Some("s3cr%21t"));
        assert_eq!(percent_decode("s3cr%21t").as_deref(), Some("s3cr!t"));
        assert_eq!(percent_decode("bad%2"), None);
        let odd = "tok en;=%+ü";
        assert_eq!(percent_decode(&percent_encode(odd)).as_deref(), Some(odd));
        assert_eq!(
            parse_head("garbage"),
            RequestHead {
                method: "garbage".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn only_configured_tokens_are_accepted() {
        let tokens = vec!["operator-token-0123456789".to_string()];
        assert!(token_accepted(&tokens, "operator-token-0123456789"));
        assert!(!token_accepted(&tokens, "operator-token-012345678"));
        assert!(!token_accepted(&tokens, ""));
        assert!(!token_accepted(&[], ""));
    }
}
