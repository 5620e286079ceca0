//! The web page in a real browser: `outdial serve` on loopback with sipp as the carrier's far
//! end, and tests/web/test_page.py (pytest-playwright driving Debian's chromium, axe-core in
//! the page) as an admin who logs in, creates and imports, starts a campaign, watches it and
//! the live monitor, exports, logs out — and a second account who sees none of it.
//! Screenshots of every screen land in target/web-shots/.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn the_web_page_in_chromium() {
    require_tool("sipp");
    require_tool("chromium");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(python.is_file(), "run `make setup` (.venv with playwright)");
    assert!(
        root.join("tests/web/node_modules/axe-core/axe.min.js")
            .is_file(),
        "run `make setup` (axe-core in tests/web)"
    );
    let dir = test_dir("web_page");
    let dir = dir.path();
    // People say hello and wait; numbers ending in 4 reach a voicemail greeting and its beep.
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 3.0);
    voicemail_with_beep(dir, &dir.join("voicemail-stream.wav"));
    to_ulaw_raw(
        &dir.join("voicemail-stream.wav"),
        &dir.join("voicemail.ulaw"),
    );
    // What people hear, a shared file of the media directory (the dialog offers it).
    let media = dir.join("media");
    std::fs::create_dir_all(&media).expect("media directory");
    speech_wav_padded(
        &media.join("reminder.wav"),
        "This is a reminder. Goodbye.",
        0.1,
        0.2,
    );
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "100"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 10);
    let key = create_key(dir, "web-admin");
    let key2 = create_key(dir, "web-other");
    // The guide's example, a voicemail and a busy line (sipp answers by the last digit), and
    // a row whose number is too short.
    let csv = dir.join("contacts.csv");
    std::fs::write(
        &csv,
        "12025550101,John Doe,Google Ads\n12025550102,Jane Smith,Website visitor\n\
         12345,Bad Row,Typo\n12025550103,Peter Jones,Whatsapp query\n\
         12025550104,Mailbox Mary,Voicemail\n12025550106,Busy Bob,Busy line\n",
    )
    .expect("write the CSV");
    let server = ServeProcess::start(dir, http_port);
    let shots = root.join("target/web-shots");

    let run = run_with_timeout(
        Command::new(&python)
            .args(["-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"])
            .arg(root.join("tests/web/test_page.py"))
            .env("OUTDIAL_URL", &server.api)
            .env("OUTDIAL_LOGIN", "web-admin")
            .env("OUTDIAL_KEY", &key)
            .env("OUTDIAL_LOGIN2", "web-other")
            .env("OUTDIAL_KEY2", &key2)
            .env("OUTDIAL_CSV", &csv)
            .env("OUTDIAL_SHOTS", &shots)
            .current_dir(root),
        Duration::from_secs(420),
    );
    assert!(
        run.status.is_some_and(|s| s.success()),
        "the browser test failed:\n{}\n{}\nserve log:\n{}",
        tail(&run.stdout, 80),
        tail(&run.stderr, 40),
        server.log_tail(60)
    );
    drop(sipp);
}

/// The cookie session over plain HTTP: what the browser test relies on, checked header by
/// header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cookie_session_wants_its_csrf_token_and_ends_at_logout() {
    let dir = test_dir("web_cookie");
    let dir = dir.path();
    let http_port = free_tcp_port();
    write_serve_config(dir, free_udp_port(), http_port, 4);
    let key = create_key(dir, "cookie-admin");
    let server = ServeProcess::start(dir, http_port);
    let api = &server.api;
    let http = reqwest::Client::new();

    // The page and its assets need no credentials, and carry a strict policy.
    let page = http.get(format!("{api}/")).send().await.expect("GET /");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("CSP")
        .to_string();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().await.expect("body").contains("/assets/app.js"));
    let js = http
        .get(format!("{api}/assets/app.js"))
        .send()
        .await
        .expect("app.js");
    assert_eq!(js.status(), 200);
    assert!(js.headers()["content-type"]
        .to_str()
        .expect("type")
        .starts_with("text/javascript"));
    let missing = http
        .get(format!("{api}/assets/nope.js"))
        .send()
        .await
        .expect("nope");
    assert_eq!(missing.status(), 404);
    // Not logged in: the session answer is empty, not an error.
    let none: serde_json::Value = http
        .get(format!("{api}/web/session"))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert!(none["account"].is_null(), "{none}");

    // A wrong key: 401, no cookie.
    let wrong = http
        .post(format!("{api}/web/login"))
        .json(&serde_json::json!({"login": "cookie-admin", "api_key": "odk_wrong"}))
        .send()
        .await
        .expect("login");
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());

    // Behind a TLS proxy the cookie is Secure; HttpOnly and SameSite=Strict always.
    let login = http
        .post(format!("{api}/web/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&serde_json::json!({"login": "cookie-admin", "api_key": key}))
        .send()
        .await
        .expect("login");
    assert_eq!(login.status(), 200);
    let set_cookie = login.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    for part in [
        "outdial_session=ods_",
        "HttpOnly",
        "SameSite=Strict",
        "Secure",
        "Path=/",
    ] {
        assert!(set_cookie.contains(part), "{part} missing: {set_cookie}");
    }
    let body: serde_json::Value = login.json().await.expect("json");
    let csrf = body["csrf"].as_str().expect("csrf").to_string();
    assert_eq!(body["account"]["login"], "cookie-admin");
    let cookie = set_cookie.split(';').next().expect("pair").to_string();

    // Reading with the cookie works; changing needs the token; a wrong token is refused.
    let list = http
        .get(format!("{api}/v1/campaigns"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    let new = serde_json::json!({"name": "cookie campaign"});
    for token in [None, Some("0".repeat(64))] {
        let mut req = http
            .post(format!("{api}/v1/campaigns"))
            .header("Cookie", &cookie)
            .json(&new);
        if let Some(t) = &token {
            req = req.header("X-CSRF-Token", t);
        }
        let refused = req.send().await.expect("post");
        assert_eq!(refused.status(), 403, "token {token:?}");
    }
    let made = http
        .post(format!("{api}/v1/campaigns"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .json(&new)
        .send()
        .await
        .expect("post");
    assert_eq!(made.status(), 201);
    let me: serde_json::Value = http
        .get(format!("{api}/web/session"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("json");
    assert_eq!(me["csrf"], csrf.as_str());
    assert_eq!(me["account"]["login"], "cookie-admin");

    // Logout (itself a change: it needs the token) ends the session and clears the cookie.
    let no_token = http
        .post(format!("{api}/web/logout"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("logout");
    assert_eq!(no_token.status(), 403);
    let out = http
        .post(format!("{api}/web/logout"))
        .header("Cookie", &cookie)
        .header("X-CSRF-Token", &csrf)
        .send()
        .await
        .expect("logout");
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .contains("Max-Age=0"));
    let after = http
        .get(format!("{api}/v1/campaigns"))
        .header("Cookie", &cookie)
        .send()
        .await
        .expect("list");
    assert_eq!(after.status(), 401);
}
