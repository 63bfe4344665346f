//! `doge ui`: a local web dashboard over the run registry (runs table with the `--where` filter
//! language, live curves, compare view, evals with error bars, lineage).
//!
//! axum serves it from a current-thread tokio runtime. The page, its script and its stylesheet
//! are compiled into the binary (`static/`), so it works offline and needs no build step. Every
//! endpoint is a GET: the dashboard reads the registry and writes nothing. Registry queries
//! are blocking (rusqlite, the sync postgres client) and a [`Registry`] is not `Sync`, so each
//! request borrows a connection from a small pool inside `spawn_blocking`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use clap::Args;

use crate::registry::cli::{RegistryPath, DEFAULT_REGISTRY};
use crate::registry::db::Location;
use crate::registry::Registry;

pub mod api;

use api::ApiError;

const INDEX_HTML: &str = include_str!("static/index.html");
const APP_JS: &str = include_str!("static/app.js");
const STYLE_CSS: &str = include_str!("static/style.css");

/// Connections kept open between requests (and the most queries that run at once).
const POOL_SIZE: usize = 4;

#[derive(Args, Debug)]
pub struct UiArgs {
    #[command(flatten)]
    pub path: RegistryPath,
    /// Address to listen on. The default serves this machine only; anything else lets whoever
    /// reaches the port read the registry.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port to listen on; 0 picks a free one (the URL printed says which).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Print one line per request to stderr: unix start time, method, path, status, duration.
    #[arg(long)]
    pub log: bool,
}

/// Open registry connections, reused between requests.
struct Pool {
    location: Location,
    idle: Mutex<Vec<Registry>>,
}

impl Pool {
    fn take(&self) -> Result<Registry> {
        let reused = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        match reused {
            Some(r) => Ok(r),
            None => Registry::connect(&self.location),
        }
    }

    fn give_back(&self, reg: Registry) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < POOL_SIZE {
            idle.push(reg);
        }
    }
}

struct AppState {
    pool: Pool,
    /// Host names a request may carry besides the loopback ones (None: any, when serving on
    /// all interfaces). Refusing others stops DNS-rebinding pages from reading the registry.
    host: Option<String>,
    log: bool,
}

type Shared = Arc<AppState>;

/// Runs `f` on a pooled connection in the blocking pool. A connection whose query failed is
/// dropped rather than reused (a server may have closed it).
async fn with_registry<F>(st: &Shared, f: F) -> Result<Response, ApiError>
where
    F: FnOnce(&Registry) -> Result<serde_json::Value, ApiError> + Send + 'static,
{
    let st = st.clone();
    let out = tokio::task::spawn_blocking(move || {
        let reg = st.pool.take().map_err(ApiError::internal)?;
        let out = f(&reg);
        if !matches!(&out, Err(e) if e.status == StatusCode::INTERNAL_SERVER_ERROR) {
            st.pool.give_back(reg);
        }
        out
    })
    .await
    .map_err(|e| ApiError::internal(anyhow::anyhow!("query task failed: {e}")))??;
    Ok(json_response(StatusCode::OK, &out))
}

pub(crate) fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
    let body = serde_json::to_string(v).unwrap_or_else(|_| "{}".into());
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

type Params = Query<HashMap<String, String>>;

async fn runs(State(st): State<Shared>, Query(q): Params) -> Result<Response, ApiError> {
    with_registry(&st, move |reg| api::runs(reg, &q)).await
}

async fn run_detail(
    State(st): State<Shared>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    with_registry(&st, move |reg| api::run_detail(reg, &id)).await
}

async fn metrics(State(st): State<Shared>, Query(q): Params) -> Result<Response, ApiError> {
    with_registry(&st, move |reg| api::metrics(reg, &q)).await
}

async fn compare(State(st): State<Shared>, Query(q): Params) -> Result<Response, ApiError> {
    with_registry(&st, move |reg| api::compare(reg, &q)).await
}

async fn info(State(st): State<Shared>) -> Result<Response, ApiError> {
    let location = st.pool.location.to_string();
    with_registry(&st, move |reg| api::info(reg, &location)).await
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The binary is the version: revalidate, so a rebuilt doge's page is never mixed with an old one.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

async fn not_found(req: Request) -> Response {
    let msg = format!(
        "no endpoint {} {} (the API: /api/runs, /api/runs/ID, /api/metrics, /api/compare, /api/info)",
        req.method(),
        req.uri().path()
    );
    ApiError::new(StatusCode::NOT_FOUND, msg).into_response()
}

/// Refuses requests whose Host is not this machine (DNS rebinding), adds the headers every
/// answer carries, and logs the request when asked.
async fn guard(State(st): State<Shared>, req: Request, next: Next) -> Response {
    let start = crate::registry::now();
    let clock = std::time::Instant::now();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let host_ok = match (&st.host, req.headers().get(header::HOST)) {
        (None, _) | (_, None) => true,
        (Some(allowed), Some(h)) => {
            let h = h.to_str().unwrap_or("");
            let name = match h.rfind(':') {
                Some(i) if !h[i..].contains(']') => &h[..i],
                _ => h,
            };
            ["localhost", "127.0.0.1", "[::1]", allowed.as_str()].contains(&name)
        }
    };
    let mut r = if host_ok {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "this dashboard answers requests for this machine only (Host header)".into(),
        )
        .into_response()
    };
    let h = r.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if st.log {
        eprintln!(
            "[{start:.6}] {method} {uri} {} {:.1}ms",
            r.status().as_u16(),
            clock.elapsed().as_secs_f64() * 1e3
        );
    }
    r
}

fn router(st: Shared) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/info", get(info))
        .route("/api/runs", get(runs))
        .route("/api/runs/{id}", get(run_detail))
        .route("/api/metrics", get(metrics))
        .route("/api/compare", get(compare))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(st.clone(), guard))
        .with_state(st)
}

/// `doge ui`: serves the dashboard until interrupted.
pub fn run(args: &UiArgs) -> Result<()> {
    let location = args.path.location();
    anyhow::ensure!(
        location.exists(),
        "{location}: no registry here (runs record into {DEFAULT_REGISTRY} by default; pass --registry PATH or a postgres:// URL, or set DOGE_REGISTRY)"
    );
    // Fail now, not at the first request, when the registry cannot be opened.
    let first = Registry::connect(&location)?;
    let st = Arc::new(AppState {
        pool: Pool {
            location: location.clone(),
            idle: Mutex::new(vec![first]),
        },
        host: (!args.host.is_unspecified()).then(|| match args.host {
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        }),
        log: args.log,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(POOL_SIZE)
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async {
        let addr = SocketAddr::new(args.host, args.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr} (another `doge ui`? try --port 0)"))?;
        let bound = listener.local_addr()?;
        // On all interfaces (0.0.0.0, ::), this machine reaches it through loopback.
        let url = match bound.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => format!("http://127.0.0.1:{}/", bound.port()),
            IpAddr::V6(ip) if ip.is_unspecified() => format!("http://[::1]:{}/", bound.port()),
            IpAddr::V6(ip) => format!("http://[{ip}]:{}/", bound.port()),
            ip => format!("http://{ip}:{}/", bound.port()),
        };
        if !bound.ip().is_loopback() {
            eprintln!(
                "warning: serving on {bound}: whoever reaches this port can read the registry"
            );
        }
        println!("doge ui: {url}  (registry {location}, read-only; Ctrl-C stops)");
        use std::io::Write;
        std::io::stdout().flush()?;
        axum::serve(listener, router(st))
            .await
            .context("serving the dashboard")
    })
}
