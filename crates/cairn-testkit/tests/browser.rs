//! The headless-Chromium driver against a tiny local site: problems are
//! recorded (and only real ones), JavaScript can be switched off, forms
//! submit, cookie attributes read back, and phone screenshots are phone-wide.

use std::path::Path;
use std::time::Instant;

use axum::Router;
use axum::extract::{Form, Query};
use axum::http::{HeaderMap, header};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect};
use axum::routing::{get, post};
use cairn_testkit::browser::{Browser, BrowserError, Page, PageOptions, png_dimensions};
use serde::Deserialize;

#[derive(Deserialize)]
struct HomeQuery {
    bad: Option<String>,
}

async fn home(Query(query): Query<HomeQuery>) -> impl IntoResponse {
    // The bad page adds an image that is not there, a cookie Chromium refuses
    // (SameSite=None needs Secure) and an inline script its Content-Security-
    // Policy forbids; its script file logs an error.
    let refused_cookie = if query.bad.is_some() {
        "refused=1; SameSite=None; Path=/"
    } else {
        "welcome=1; Path=/"
    };
    let missing_image = if query.bad.is_some() {
        r#"<img src="/missing.png" alt="missing"><script>document.title = 'inline ran';</script>"#
    } else {
        ""
    };
    let page = Html(format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Test site</title></head>
<body>
<h1>Test   site</h1>
<ul><li>one</li><li> two </li></ul>
<p id="scripted"></p>
{missing_image}
<form method="post" action="/submit">
<input id="word" name="word" value="">
<button id="send" type="submit">Send</button>
</form>
<script src="/app.js"></script>
</body></html>"#
    ));
    (
        [
            (header::SET_COOKIE, refused_cookie),
            (header::CONTENT_SECURITY_POLICY, "script-src 'self'"),
        ],
        page,
    )
}

const APP_JS: &str = "document.getElementById('scripted').textContent = 'script ran';\n\
    if (new URLSearchParams(location.search).has('bad')) { console.error('the bad flag is set'); }\n";

async fn app_js() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/javascript")], APP_JS)
}

async fn favicon() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        "<svg xmlns='http://www.w3.org/2000/svg'/>",
    )
}

#[derive(Deserialize)]
struct Submitted {
    word: String,
}

/// Like a login: set the session cookie, then 303 to the result page.
async fn submit(Form(submitted): Form<Submitted>) -> impl IntoResponse {
    let word: String = submitted
        .word
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    (
        // Appended: an array of headers would keep only the last Set-Cookie.
        AppendHeaders([
            (
                header::SET_COOKIE,
                "session=s3cret; HttpOnly; Secure; SameSite=Strict; Path=/",
            ),
            (header::SET_COOKIE, "plain=1; SameSite=Lax; Path=/"),
        ]),
        Redirect::to(&format!("/done?word={word}")),
    )
}

/// Names the cookies the request carried, to show what the browser sends back.
async fn done(Query(query): Query<Submitted>, headers: HeaderMap) -> Html<String> {
    let cookies = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split('=').next())
        .map(|name| {
            name.trim()
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ");
    let word: String = query
        .word
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    Html(format!(
        "<!doctype html><html><head><title>Done</title></head>\
         <body><p id=\"result\">received {word}</p><p id=\"cookies\">{cookies}</p></body></html>"
    ))
}

/// Serve the test site on a free loopback port; returns its base URL.
async fn serve_site() -> String {
    let app = Router::new()
        .route("/", get(home))
        .route("/app.js", get(app_js))
        // Chromium asks every page for it: without it each page has a 404.
        .route("/favicon.ico", get(favicon))
        .route("/submit", post(submit))
        .route("/done", get(done));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("serve the test site");
    });
    format!("http://{address}")
}

async fn cookie_names(page: &Page) -> Vec<String> {
    let mut names: Vec<String> = (page.cookies().await.expect("cookies"))
        .into_iter()
        .map(|cookie| cookie.name)
        .collect();
    names.sort();
    names
}

async fn launch() -> Browser {
    Browser::launch()
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test]
async fn problems_are_empty_on_a_clean_page_and_name_errors_and_404s() {
    let site = serve_site().await;
    let started = Instant::now();
    let browser = launch().await;
    let launched = started.elapsed();
    let page = browser
        .new_page(PageOptions::desktop())
        .await
        .expect("open a page");
    page.goto(&format!("{site}/"))
        .await
        .expect("load the clean page");
    eprintln!(
        "timing: launch {} ms, launch + first page loaded {} ms",
        launched.as_millis(),
        started.elapsed().as_millis()
    );
    assert_eq!(page.text("#scripted").await.expect("text"), "script ran");
    assert_eq!(page.text("h1").await.expect("text"), "Test site");
    assert_eq!(page.texts("li").await.expect("texts"), ["one", "two"]);
    assert_eq!(page.count("li").await.expect("count"), 2);
    assert_eq!(
        page.attr("#send", "type").await.expect("attr").as_deref(),
        Some("submit")
    );
    assert_eq!(page.attr("#send", "title").await.expect("attr"), None);
    let missing = page.text("#nothing").await.expect_err("no such element");
    assert_eq!(missing.kind(), "no_element", "{missing}");
    assert!(
        page.problems().is_empty(),
        "clean page: {:#?}",
        page.problems()
    );

    let bad = browser
        .new_page(PageOptions::desktop())
        .await
        .expect("open a page");
    bad.goto(&format!("{site}/?bad=1"))
        .await
        .expect("load the bad page");
    let problems = bad.problems();
    assert!(
        problems
            .iter()
            .any(|p| p.contains("console.error: the bad flag is set")
                && p.contains(&format!("{site}/app.js"))),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("HTTP 404") && p.contains(&format!("{site}/missing.png"))),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(
            |p| p.starts_with("cookie refused: refused (SameSiteNoneInsecure)")
                && p.contains(&format!("{site}/?bad=1"))
        ),
        "{problems:#?}"
    );
    // The clean page's list is its own: the bad page did not add to it.
    assert!(page.problems().is_empty(), "{:#?}", page.problems());
}

#[tokio::test]
async fn javascript_off_stops_page_scripts_but_not_eval() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser
        .new_page(PageOptions::desktop().without_javascript())
        .await
        .expect("open a page");
    page.goto(&format!("{site}/?bad=1")).await.expect("load");
    // The page's script would have written this text and logged an error.
    assert_eq!(page.text("#scripted").await.expect("text"), "");
    assert!(
        !page
            .problems()
            .iter()
            .any(|p| p.contains("the bad flag is set")),
        "{:#?}",
        page.problems()
    );
    // Runtime.evaluate still runs with the page's scripts disabled.
    assert_eq!(page.eval("1 + 2").await.expect("eval"), 3);
    assert_eq!(
        page.eval("Promise.resolve('awaited')").await.expect("eval"),
        "awaited"
    );
    let thrown = page
        .eval("(() => { throw new Error('boom'); })()")
        .await
        .expect_err("a throwing script");
    assert_eq!(thrown.kind(), "script", "{thrown}");
    assert!(thrown.to_string().contains("boom"), "{thrown}");
}

#[tokio::test]
async fn a_form_submits_without_javascript_and_cookie_attributes_read_back() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser
        .new_page(PageOptions::desktop().without_javascript())
        .await
        .expect("open a page");
    page.goto(&format!("{site}/")).await.expect("load");
    assert_eq!(cookie_names(&page).await, ["welcome"]);
    page.fill("#word", "cairn").await.expect("fill");
    page.click_and_wait("#send").await.expect("submit the form");
    assert_eq!(
        page.url().await.expect("url"),
        format!("{site}/done?word=cairn")
    );
    assert_eq!(page.text("#result").await.expect("text"), "received cairn");

    let cookies = page.cookies().await.expect("cookies");
    // Chromium keeps the Secure cookie although the site is plain
    // http://127.0.0.1 (a loopback origin counts as secure), and sends it back.
    assert_eq!(
        page.text("#cookies").await.expect("text"),
        "welcome session plain"
    );
    let session = cookies
        .iter()
        .find(|cookie| cookie.name == "session")
        .unwrap_or_else(|| panic!("Chromium dropped the Secure cookie: {cookies:#?}"));
    assert_eq!(session.value, "s3cret");
    assert!(session.http_only && session.secure && session.session);
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    assert_eq!(session.path, "/");
    let plain = cookies
        .iter()
        .find(|cookie| cookie.name == "plain")
        .expect("the plain cookie");
    assert!(!plain.http_only && !plain.secure);
    assert_eq!(plain.same_site.as_deref(), Some("Lax"));
    assert!(page.problems().is_empty(), "{:#?}", page.problems());

    page.clear_cookies().await.expect("clear cookies");
    assert!(page.cookies().await.expect("cookies").is_empty());
    page.set_cookie(&site, "set", "by-test")
        .await
        .expect("set a cookie");
    let cookies = page.cookies().await.expect("cookies");
    assert_eq!(
        cookies
            .iter()
            .map(|cookie| (cookie.name.as_str(), cookie.value.as_str()))
            .collect::<Vec<_>>(),
        [("set", "by-test")]
    );

    // Each page has its own cookie jar.
    let other = browser
        .new_page(PageOptions::desktop())
        .await
        .expect("open a page");
    other.goto(&format!("{site}/")).await.expect("load");
    assert_eq!(cookie_names(&other).await, ["welcome"]);
}

#[tokio::test]
async fn a_phone_screenshot_is_a_png_390_pixels_wide() {
    let site = serve_site().await;
    let browser = launch().await;
    let page = browser
        .new_page(PageOptions::phone())
        .await
        .expect("open a page");
    page.goto(&format!("{site}/")).await.expect("load");
    assert_eq!(page.eval("window.innerWidth").await.expect("eval"), 390);
    let directory = tempfile::tempdir().expect("tempdir");
    let path = directory.path().join("phone.png");
    page.screenshot(&path).await.expect("screenshot");
    let png = std::fs::read(&path).expect("read the screenshot");
    let (width, height) = png_dimensions(&png).expect("a PNG");
    assert_eq!((width, height), (390, 844));

    // Taller content: the screenshot is the whole page, not the viewport.
    page.eval("document.body.style.minHeight = '3000px'")
        .await
        .expect("eval");
    let tall = page.screenshot_png().await.expect("screenshot");
    let (width, height) = png_dimensions(&tall).expect("a PNG");
    assert_eq!(width, 390);
    assert!(height >= 3000, "height {height}");
}

#[tokio::test]
async fn a_missing_chromium_says_what_to_install() {
    let error = Browser::launch_at(Path::new("/nonexistent/chromium"))
        .await
        .expect_err("no browser there");
    assert_eq!(error.kind(), "not_installed");
    let message = error.to_string();
    assert!(
        message.contains("apt-get install chromium") && message.contains("/nonexistent/chromium"),
        "{message}"
    );
    assert!(matches!(error, BrowserError::NotInstalled { .. }));
}
