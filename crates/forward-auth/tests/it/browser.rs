//! The browser flow in headless Chromium (chromedriver, driven with fantoccini) through Caddy:
//! login page, back at the application, a page the viewer may not open, logout, and the login
//! page again. A screenshot of each page is saved under the target directory.

use std::path::PathBuf;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use portcullis_testkit::chromium::ChromeDriver;

use crate::support::{PASSWORD, VIEWER, env, proxies};

fn screenshot_dir() -> PathBuf {
    // target/<profile>/deps/it-… → target/forward-auth-screenshots
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("forward-auth-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, dir: &std::path::Path, n: usize, name: &str) {
    let png = c.screenshot().await.unwrap();
    let path = dir.join(format!("{n:02}-{name}.png"));
    std::fs::write(&path, png).unwrap();
    println!("screenshot: {}", path.display());
}

async fn wait_for_url(c: &Client, prefix: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let url = c.current_url().await.unwrap().to_string();
        if url.starts_with(prefix) {
            return url;
        }
        if std::time::Instant::now() >= deadline {
            let page = c.source().await.unwrap_or_default();
            panic!("never reached {prefix}: at {url}\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn chromium_logs_in_is_refused_an_admin_path_and_logs_out() {
    // The world first: its start is not part of the browser's walk.
    proxies();
    let driver = ChromeDriver::start().unwrap();
    // The issuer's certificate is from the test CA, which this fresh profile does not know.
    let caps = driver
        .capabilities(&["--ignore-certificate-errors"])
        .unwrap();
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap();
    // The session is closed (and Chromium with it) whether or not the walk succeeds.
    let walk = tokio::spawn(walk(c.clone()));
    let outcome = walk.await;
    c.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn walk(c: Client) {
    let e = env();
    let dir = screenshot_dir();
    let site = &proxies().caddy.url;

    c.goto(&format!("{site}/app/dashboard")).await.unwrap();
    wait_for_url(&c, &format!("{}/auth", e.server_url)).await;
    c.wait().for_element(Locator::Id("password")).await.unwrap();
    shot(&c, &dir, 1, "login").await;

    c.find(Locator::Id("login"))
        .await
        .unwrap()
        .send_keys(crate::support::login_name(VIEWER))
        .await
        .unwrap();
    c.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(PASSWORD)
        .await
        .unwrap();
    c.find(Locator::Css(
        "form[action$='/auth/login'] button[type=submit]",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let back = wait_for_url(&c, site).await;
    assert_eq!(back, format!("{site}/app/dashboard"));
    let body = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains(VIEWER),
        "the application does not see the user: {body}"
    );
    assert!(body.contains("oidc:viewers"), "{body}");
    assert!(
        !body.contains("_portcullis_auth"),
        "the session cookie reached the application"
    );
    shot(&c, &dir, 2, "application").await;

    c.goto(&format!("{site}/admin/settings")).await.unwrap();
    let denied = c
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(denied.contains("Access denied"), "{denied}");
    assert!(
        denied.contains(VIEWER) && denied.contains("/admin/settings"),
        "{denied}"
    );
    shot(&c, &dir, 3, "forbidden").await;

    c.goto(&format!("{site}/_oauth/logout")).await.unwrap();
    wait_for_url(&c, &e.server_url).await;
    shot(&c, &dir, 4, "logged-out").await;

    c.goto(&format!("{site}/app/dashboard")).await.unwrap();
    wait_for_url(&c, &format!("{}/auth", e.server_url)).await;
    c.wait().for_element(Locator::Id("password")).await.unwrap();
    shot(&c, &dir, 5, "login-again").await;
}
