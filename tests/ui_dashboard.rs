//! `doge ui`: its HTTP API, spoken to over a plain TCP socket, and the page itself in headless
//! Chromium (skipped with a notice when there is none; `DOGE_REQUIRE_CHROMIUM=1` makes that a
//! failure, as CI sets it). Every expected value comes from what the test seeded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use crate::registry_support::{add, count, Seed, TestDb};
use doge::registry::{Registry, RunStatus};

/// A running `doge ui --port 0 --log`, killed on drop; its request log is collected.
struct Ui {
    child: Child,
    url: String,
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
}

impl Ui {
    fn start(registry: &str) -> Ui {
        let mut child = Command::new(env!("CARGO_BIN_EXE_doge"))
            .args(["ui", "--port", "0", "--log", "--registry", registry])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("doge ui printed no URL: {first:?}\n{err}")
            })
            .to_string();
        let port: u16 = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Ui {
            child,
            url,
            port,
            log,
        }
    }

    fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, "127.0.0.1")
    }

    fn json(&self, path: &str) -> Json {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.body))
    }

    /// Request log lines (`[unix start time] METHOD URI STATUS ms`) as (start, uri).
    fn requests(&self) -> Vec<(f64, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| {
                let rest = l.strip_prefix('[')?;
                let (t, rest) = rest.split_once("] ")?;
                let uri = rest.split_whitespace().nth(1)?;
                Some((t.parse().ok()?, uri.to_string()))
            })
            .collect()
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Json {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`, so the body ends at EOF).
fn request(port: u16, method: &str, path: &str, host: &str) -> Response {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

fn q(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ids_of(v: &Json) -> Vec<String> {
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// pre (pretrain, lr 1e-3, final loss 2.5, hellaswag 0.41) -> tune (sft) ; wide (pretrain,
/// lr 6e-3, failed, final loss 3.5).
fn seed_three(reg: &mut Registry) {
    add(
        reg,
        &Seed {
            id: "pre",
            lr: 1e-3,
            seed: 1,
            final_loss: 2.5,
            hellaswag: Some(0.41),
            ..Default::default()
        },
    );
    add(
        reg,
        &Seed {
            id: "tune",
            stage: "sft",
            parent: Some("pre"),
            lr: 1e-3,
            seed: 1,
            final_loss: 2.0,
            ..Default::default()
        },
    );
    add(
        reg,
        &Seed {
            id: "wide",
            lr: 6e-3,
            seed: 2,
            final_loss: 3.5,
            status: RunStatus::Failed,
            ..Default::default()
        },
    );
}

fn table_rows(reg: &Registry) -> (i64, i64, i64) {
    (
        count(reg, "SELECT count(*) FROM runs"),
        count(reg, "SELECT count(*) FROM metrics"),
        count(reg, "SELECT count(*) FROM evals"),
    )
}

#[test]
fn api_lists_filters_pages_and_only_reads() {
    for db in TestDb::all() {
        let kind = db.kind();
        let mut reg = db.open();
        seed_three(&mut reg);
        let before = table_rows(&reg);
        let ui = Ui::start(&db.arg());
        assert!(
            ui.url.starts_with("http://127.0.0.1:"),
            "{kind}: served on {}",
            ui.url
        );

        // The page and its assets, from the binary.
        let page = ui.get("/");
        assert_eq!(page.status, 200);
        assert!(page
            .header("content-type")
            .unwrap()
            .starts_with("text/html"));
        assert!(
            page.body.contains("<script src=\"/app.js\">"),
            "{}",
            page.body
        );
        let js = ui.get("/app.js");
        assert_eq!(js.status, 200);
        assert!(js.header("content-type").unwrap().contains("javascript"));
        assert!(js.body.contains("/api/metrics"));
        assert_eq!(ui.get("/style.css").status, 200);

        // Every run, newest first by default, with its last metrics as seeded.
        let all = ui.json("/api/runs");
        assert_eq!(all["total"], 3, "{kind}: {all}");
        assert_eq!(ids_of(&all), ["wide", "tune", "pre"], "{kind}");
        let pre = &all["runs"][2];
        assert_eq!(pre["step"], 10);
        assert_eq!(pre["metrics"]["loss"], serde_json::json!([10, 2.5]));
        assert_eq!(
            pre["evals"]["hellaswag.acc_norm"],
            serde_json::json!([0.41, 0.01])
        );
        assert_eq!(all["runs"][0]["status"], "failed");

        // The filter language and sort keys of `doge runs list`, and paging.
        let low = ui.json(&format!(
            "/api/runs?where={}&sort=metric.loss",
            q("stage.pretrain.lr < 3e-3 and status = done")
        ));
        assert_eq!(ids_of(&low), ["tune", "pre"], "{kind}: {low}");
        assert_eq!(low["columns"], serde_json::json!(["stage.pretrain.lr"]));
        assert_eq!(low["runs"][0]["values"]["stage.pretrain.lr"], 1e-3);
        let page2 = ui.json("/api/runs?sort=-metric.loss&limit=1&offset=1");
        assert_eq!(
            (page2["total"].as_u64(), ids_of(&page2)),
            (Some(3), vec!["pre".to_string()])
        );

        // A filter that does not parse: 400 with the parser's own message.
        let bad = "stage.pretrain.lr <";
        let r = ui.get(&format!("/api/runs?where={}", q(bad)));
        assert_eq!(r.status, 400, "{kind}: {}", r.body);
        assert!(r
            .header("content-type")
            .unwrap()
            .starts_with("application/json"));
        let parser = doge::registry::filter::parse(bad).unwrap_err();
        let body = r.json();
        assert_eq!(body["error"], parser.to_string(), "{kind}");
        assert_eq!(body["column"], parser.column);
        let r = ui.get("/api/runs?limit=many");
        assert_eq!(r.status, 400, "{}", r.body);

        // One run: config, lineage both ways, evals with stderr; prefixes resolve.
        let tune = ui.json("/api/runs/tune");
        assert_eq!(tune["run"]["config"]["seed"], 1);
        assert_eq!(tune["run"]["parent_id"], "pre");
        assert_eq!(tune["lineage"]["ancestors"][0]["id"], "pre");
        let pre = ui.json("/api/runs/pr");
        assert_eq!(pre["run"]["id"], "pre", "a unique prefix");
        assert_eq!(pre["lineage"]["descendants"][0]["id"], "tune");
        assert_eq!(pre["evals"][0]["task"], "hellaswag");
        assert_eq!(pre["evals"][0]["value"], 0.41);
        assert_eq!(pre["evals"][0]["stderr"], 0.01);
        assert!(
            pre["run"]["created"].as_str().unwrap().contains('T'),
            "ISO time: {}",
            pre["run"]["created"]
        );
        let r = ui.get("/api/runs/nosuchrun");
        assert_eq!(r.status, 404, "{}", r.body);
        assert!(r.json()["error"].as_str().unwrap().contains("nosuchrun"));

        // Curves: everything, or only the points after a step (what the page polls).
        let m = ui.json("/api/metrics?ids=pre&names=loss");
        let seeded: Vec<Json> = (1..=10u64)
            .map(|s| serde_json::json!([s, 2.5 + (10 - s) as f64 * 0.1]))
            .collect();
        assert_eq!(m["series"][0]["points"], Json::Array(seeded.clone()));
        assert_eq!(m["runs"]["pre"], "done");
        let m = ui.json("/api/metrics?ids=pre,wide&after_step=7");
        let series = m["series"].as_array().unwrap();
        assert_eq!(series.len(), 4, "loss and lr of both runs: {m}");
        for s in series {
            let steps: Vec<u64> = s["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[0].as_u64().unwrap())
                .collect();
            assert_eq!(steps, [8, 9, 10], "{s}");
        }
        let m = ui.json("/api/metrics?ids=pre&after=pre:loss:9,pre:lr:10");
        let by_name = |n: &str| {
            m["series"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == n)
                .unwrap()["points"]
                .clone()
        };
        assert_eq!(by_name("loss"), Json::Array(seeded[9..].to_vec()));
        assert_eq!(by_name("lr"), serde_json::json!([]));
        let r = ui.get("/api/metrics?ids=pre,ghost");
        assert_eq!(r.status, 404);
        assert!(r.json()["error"].as_str().unwrap().contains("ghost"));

        // Compare: only the config keys that differ, evals with stderr.
        let c = ui.json("/api/compare?ids=pre,wide");
        let keys: Vec<&str> = c["config_diff"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["key"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["seed", "stage.pretrain.lr"], "{kind}: {c}");
        assert_eq!(
            c["config_diff"][1]["values"],
            serde_json::json!(["0.001", "0.006"])
        );
        assert_eq!(
            c["evals"][0]["values"],
            serde_json::json!([[0.41, 0.01], null])
        );
        assert_eq!(ui.get("/api/compare?ids=pre,ghost").status, 404);

        // Read-only: no method but GET, and nothing in the registry changed.
        for (method, path) in [
            ("POST", "/api/runs"),
            ("PUT", "/api/runs/pre"),
            ("DELETE", "/api/runs/pre"),
            ("PATCH", "/"),
        ] {
            let r = request(ui.port, method, path, "127.0.0.1");
            assert_eq!(r.status, 405, "{method} {path}: {}", r.body);
        }
        let r = ui.get("/api/nothing");
        assert_eq!(r.status, 404);
        assert!(r.json()["error"].is_string());
        // A page of another site must not read it through DNS rebinding.
        assert_eq!(
            request(ui.port, "GET", "/api/runs", "evil.example").status,
            403
        );
        assert_eq!(
            request(ui.port, "GET", "/api/runs", "localhost").status,
            200
        );
        // Bound to 127.0.0.1 only: another loopback address of this machine gets no answer.
        assert!(
            TcpStream::connect_timeout(
                &format!("127.0.0.2:{}", ui.port).parse().unwrap(),
                Duration::from_secs(2)
            )
            .is_err(),
            "{kind}: doge ui answers on 127.0.0.2 too: not bound to 127.0.0.1 alone"
        );
        drop(ui);
        assert_eq!(table_rows(&reg), before, "{kind}: the dashboard wrote");
    }
}

#[test]
fn a_missing_registry_is_an_error_not_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_doge"))
        .args(["ui", "--port", "0", "--registry"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no registry here"), "{err}");
    assert!(!path.exists());
}

// ---- the page in a real browser ------------------------------------------------------------

fn chromium() -> Option<String> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| {
            Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        assert!(
            std::env::var("DOGE_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "DOGE_REQUIRE_CHROMIUM=1 but no chromium, chromium-browser or google-chrome: apt-get install chromium"
        );
        eprintln!(
            "notice: the doge ui browser test is skipped: no Chromium (apt-get install chromium)"
        );
    }
    found.map(str::to_string)
}

/// Starts headless Chromium on `url` with a virtual time budget (timers fire at once, network
/// waits pause the clock); [`finish`] returns what it printed (the DOM with `--dump-dom`).
fn headless(browser: &str, url: &str, budget_ms: u64, extra: &[&str]) -> Browser {
    // A profile of its own: two Chromiums on one profile directory hand pages to each other.
    let profile = tempfile::tempdir().unwrap();
    let child = Command::new(browser)
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--virtual-time-budget={budget_ms}"),
        ])
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Browser {
        child,
        _profile: profile,
    }
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

/// Waits for Chromium to exit (at most 120 s) and returns its standard output.
fn finish(browser: Browser) -> String {
    let Browser {
        mut child,
        _profile,
    } = browser;
    let mut out = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("chromium ran for more than 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The value of `attr` in the first `<path class="line"` element of run `id` and metric `name`.
fn curve_attr(dom: &str, id: &str, name: &str, attr: &str) -> Option<String> {
    dom.split("<path ").skip(1).find_map(|el| {
        let el = &el[..el.find('>')?];
        let has = |k: &str, v: &str| el.contains(&format!("{k}=\"{v}\""));
        if !(has("class", "line") && has("data-run", id) && has("data-metric", name)) {
            return None;
        }
        let start = el.find(&format!("{attr}=\""))? + attr.len() + 2;
        Some(el[start..start + el[start..].find('"')?].to_string())
    })
}

#[test]
fn browser_shows_the_runs_their_curves_and_points_logged_while_open() {
    let Some(browser) = chromium() else { return };
    let db = TestDb::sqlite();
    let mut reg = db.open();
    add(
        &mut reg,
        &Seed {
            id: "base-pretrain",
            final_loss: 2.75,
            hellaswag: Some(0.3),
            ..Default::default()
        },
    );
    add(
        &mut reg,
        &Seed {
            id: "base-sft",
            stage: "sft",
            parent: Some("base-pretrain"),
            final_loss: 2.25,
            ..Default::default()
        },
    );
    add(
        &mut reg,
        &Seed {
            id: "live-pretrain",
            lr: 6e-3,
            status: RunStatus::Running,
            final_loss: 3.25,
            ..Default::default()
        },
    );
    let ids = ["base-pretrain", "base-sft", "live-pretrain"];
    let ui = Ui::start(&db.arg());

    // First load: the table has the three runs; the first page draws every run's curves.
    let dom = finish(headless(&browser, &ui.url, 5_000, &["--dump-dom"]));
    for id in ids {
        assert!(
            dom.contains(&format!("<tr data-run=\"{id}\"")),
            "no table row for {id}:\n{dom}"
        );
        for metric in ["loss", "lr"] {
            assert_eq!(
                curve_attr(&dom, id, metric, "data-points").as_deref(),
                Some("10"),
                "{id} {metric}: the 10 seeded points"
            );
        }
    }
    assert_eq!(
        curve_attr(&dom, "live-pretrain", "loss", "data-last-value").as_deref(),
        Some("3.25")
    );
    assert!(
        dom.contains("data-first-render-ms="),
        "the page marks its first render"
    );
    assert!(dom.contains(r#"class="badge running""#), "{dom}");

    // Points logged while the page is open appear without a reload: the page polls. A step is
    // written once the page has fetched its curves; the check only counts when the page asked
    // again after that write (else the attempt says nothing, and another one is made).
    let mut writer = db.open();
    let mut proved = false;
    for attempt in 0..4u64 {
        let (step, value) = (1000 + attempt, 0.4375 + attempt as f64);
        let opened = doge::registry::now();
        // 10 virtual minutes: some 300 polls, a second or more of real time after the write.
        let page = headless(&browser, &ui.url, 600_000, &["--dump-dom"]);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ui
            .requests()
            .iter()
            .any(|(t, uri)| *t >= opened && uri.starts_with("/api/metrics?ids="))
        {
            assert!(Instant::now() < deadline, "the page never fetched curves");
            std::thread::sleep(Duration::from_millis(2));
        }
        writer
            .log_metrics("live-pretrain", &[(step, "loss", value)])
            .unwrap();
        let written = doge::registry::now();
        let dom = finish(page);
        let polled_after = ui.requests().iter().any(|(t, uri)| {
            *t > written && uri.starts_with("/api/metrics?") && uri.contains("after=")
        });
        let last_step = curve_attr(&dom, "live-pretrain", "loss", "data-last-step");
        if last_step.as_deref() == Some(step.to_string().as_str()) {
            assert_eq!(
                curve_attr(&dom, "live-pretrain", "loss", "data-last-value"),
                Some(value.to_string())
            );
            assert_eq!(
                curve_attr(&dom, "live-pretrain", "loss", "data-points").as_deref(),
                Some((11 + attempt).to_string().as_str())
            );
            // The table refreshes too: the run's step cell shows the new step.
            assert!(
                dom.contains(&format!("data-step=\"{step}\"")),
                "the table's step cell"
            );
            proved = true;
            break;
        }
        assert!(
            !polled_after,
            "the page polled after step {step} was written but shows {last_step:?}"
        );
        eprintln!("attempt {attempt}: the page stopped polling before the write; again");
    }
    assert!(proved, "four attempts, and no poll came after the write");

    // A screenshot of it, which must not be blank.
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("runs.png");
    finish(headless(
        &browser,
        &ui.url,
        5_000,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,1000",
        ],
    ));
    let mut img = png::Decoder::new(std::fs::File::open(&shot).unwrap())
        .read_info()
        .unwrap();
    let mut buf = vec![0; img.output_buffer_size()];
    let info = img.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1400, 1000));
    let px = info.color_type.samples();
    let colors: std::collections::HashSet<&[u8]> =
        buf[..info.buffer_size()].chunks(px).step_by(7).collect();
    assert!(
        colors.len() > 50,
        "a nearly blank screenshot ({} colours)",
        colors.len()
    );
}
