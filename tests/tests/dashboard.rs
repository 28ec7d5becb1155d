//! The web dashboard in a real headless chromium: it shows who holds a stage's lock and who
//! waits in front of it and why, and follows the pipeline live (server-sent events, no reload).
//!
//! Needs Debian's `chromium` (`.ci/run` installs it). Without it the test says so and passes,
//! unless `BATON_REQUIRE_BROWSER` is set (CI sets it).

use std::path::PathBuf;

use baton_proto::v1 as pb;
use baton_tests::browser::{Browser, find_chromium};
use baton_tests::{TestCluster, stage_is};

fn pipeline(cluster: &TestCluster) -> String {
    let gates = cluster.scratch.path().display();
    format!(
        r#"
name: web
stages:
  - name: build
    actions:
      - name: compile
        run:
          - echo "compiling $BATON_COMMIT"
          - until [ -f "{gates}/gate-$BATON_COMMIT" ]; do sleep 0.02; done
  - name: deploy
    actions:
      - name: ship
        run:
          - until [ -f "{gates}/gate-deploy-$BATON_COMMIT" ]; do sleep 0.02; done
"#
    )
}

fn artifacts() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/test-artifacts"
    ))
}

/// The text of stage `name`'s lock box, inbound boxes and last outcome, as one JS expression.
fn stage_text(name: &str) -> String {
    format!(
        r#"const s = document.querySelector('.stage[data-stage="{name}"]'); if (!s) return null;
const part = (role) => [...s.querySelectorAll('[data-role="' + role + '"]')].map(n => n.innerText).join(" | ");"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_lock_and_inbound_and_follows_live() {
    let Some(chromium) = find_chromium() else {
        if std::env::var_os("BATON_REQUIRE_BROWSER").is_some() {
            panic!(
                "chromium not found and BATON_REQUIRE_BROWSER is set (apt-get install chromium)"
            );
        }
        eprintln!(
            "SKIPPED dashboard browser test: chromium not found (apt-get install chromium, or set BATON_CHROMIUM)"
        );
        return;
    };
    let cluster = TestCluster::start(2).await;
    cluster.apply(&pipeline(&cluster)).await;
    let first = cluster.start_execution("web", "main", "c1").await;
    cluster.wait_job_running("web", &first, "build").await;
    let second = cluster.start_execution("web", "main", "c2").await;
    cluster
        .wait_until("web", &second, "c2 waiting in front of build", |e| {
            stage_is(e, "build", pb::StageStatus::Waiting)
        })
        .await;

    let url = format!("{}/#/pipeline/web", cluster.http_addr);
    let mut page = Browser::open(&chromium, &url).await;
    let build = stage_text("build");
    let shown = page
        .wait_for(&format!(
            r##"{build}
const lock = part("lock"), inbound = part("waiting");
return lock.includes("#1") && lock.includes("c1") && lock.includes("fence 1")
  && inbound.includes("#2") && inbound.includes("lock held by #1")
  && document.getElementById("live").innerText === "live" && {{ lock, inbound }};"##
        ))
        .await;
    assert!(
        shown["lock"].as_str().unwrap_or("").contains("InProgress"),
        "{shown}"
    );
    // A reload would lose this mark.
    page.eval("window.batonNoReload = true").await;
    page.screenshot(&artifacts().join("dashboard.png")).await;

    // #1 moves on to deploy; #2 enters build with the next fence token.
    cluster.open_gate("c1");
    cluster.wait_job_running("web", &first, "deploy").await;
    let deploy = stage_text("deploy");
    let moved = page
        .wait_for(&format!(
            r##"{build}
const lock = part("lock"), inbound = part("waiting"), last = part("last");
const ok = lock.includes("#2") && lock.includes("fence 2") && inbound === "" && last.includes("#1");
if (!ok) return null;
{{ {deploy}
return part("lock").includes("#1") && window.batonNoReload === true && {{ lock, last, deploy: part("lock") }}; }}"##
        ))
        .await;
    assert!(
        moved["last"].as_str().unwrap_or("").contains("Succeeded"),
        "{moved}"
    );
    page.screenshot(&artifacts().join("dashboard-moved-on.png"))
        .await;

    // The history lists both executions; #1's build log streams with its step header.
    page.eval(&format!(
        r#"document.querySelector('tr[data-execution="{first}"] a.job').click()"#
    ))
    .await;
    let log = page
        .wait_for(r#"const t = document.getElementById("log").innerText; return t.includes("job Succeeded") && t;"#)
        .await;
    let log = log.as_str().unwrap_or("");
    assert!(
        log.contains("step 1") && log.contains("compiling c1"),
        "{log}"
    );

    cluster.open_gate("deploy-c1");
    cluster.open_gate("c2");
    cluster.open_gate("deploy-c2");
    cluster
        .wait_status("web", &second, pb::ExecutionStatus::Succeeded)
        .await;
    drop(page);
    cluster.shutdown().await;
}
