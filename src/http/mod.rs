//! The HTTP server: public API (`api`), operations (`admin`), and a small live status page.

pub mod admin;
pub mod api;
pub mod auth;
pub mod error;
pub mod limits;

use std::net::SocketAddr;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, get, web};
use anyhow::Context as _;

use crate::config::Config;
use crate::wiring::{self, Pipeline};

/// A started process: its two listeners' addresses (the public one, and the admin one for
/// `/admin/*` and `/metrics`), the future that runs both, and how to stop them.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub server: std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<()>>>>,
    pub handle: Handles,
    pub pipeline: Pipeline,
}

/// Stops both listeners.
#[derive(Clone)]
pub struct Handles {
    public: ServerHandle,
    admin: ServerHandle,
}

impl Handles {
    /// Stops accepting, and (`graceful`) lets open connections finish first.
    pub async fn stop(&self, graceful: bool) {
        futures_util::join!(self.public.stop(graceful), self.admin.stop(graceful));
    }
}

#[get("/")]
async fn index() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(include_str!("index.html"))
}

/// Browser hardening on every answer: no framing, no MIME sniffing, no referrer leaking the URL,
/// and a Content-Security-Policy that allows the built-in page's own inline script and style and
/// WebSocket connections to this origin only.
fn security_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; \
             img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"))
        .add(("X-Frame-Options", "DENY"))
}

/// Unknown paths get the same JSON error shape as the API.
async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, error::ApiError> {
    Err(error::ApiError::NotFound(format!("no route for {} {}", req.method(), req.path())))
}

/// Starts what the configuration asks for and binds the HTTP servers: the public one (ingest
/// where the ingester runs, reads and `/ws` where the api runs) and the admin one (health,
/// actors, restarts, metrics; in every process). Must run inside an actix `System`. Nothing
/// starts unless the configuration passes `Config::validate`.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let config = config.validate()?;
    let auth = web::Data::new(auth::Auth::from_config(&config)?);
    let pipeline = wiring::start(&config).await?;
    auth.count_refusals_in(pipeline.metrics.clone());
    let limits = web::Data::new(limits::Limits::new(&config, pipeline.metrics.clone()));
    let auth_for_admin = auth.clone();
    let hosts = web::Data::new(auth::HostPolicy::from_config(&config));
    let hosts_for_admin = hosts.clone();
    let (serves_api, serves_ingest) = (pipeline.hub.is_some(), pipeline.intake.is_some());
    let data = web::Data::new(pipeline.clone());
    let config_data = web::Data::new(Config::clone(&config));
    let tcp_user_timeout = (config.server.tcp_user_timeout_secs > 0)
        .then(|| std::time::Duration::from_secs(config.server.tcp_user_timeout_secs));
    let notsent_lowat = config.server.tcp_notsent_lowat;
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .app_data(data.clone())
            .app_data(config_data.clone())
            .app_data(auth.clone())
            .app_data(limits.clone())
            .app_data(hosts.clone())
            .wrap(actix_web::middleware::from_fn(auth::allowed_host))
            .app_data(web::QueryConfig::default().error_handler(error::query_error))
            .wrap(security_headers())
            // The request line without its query string: `?access_token=` never reaches a log.
            .wrap(
                actix_web::middleware::Logger::new("%a \"%{request}xi\" %s %b %Dms")
                    .custom_request_replace("request", |req| format!("{} {}", req.method(), req.path()))
                    .exclude("/metrics"),
            )
            .service(api::instruments)
            .service(api::openapi);
        if serves_api {
            app = app
                .service(index)
                .service(api::snapshot)
                .service(api::positions)
                .service(api::candles)
                .service(api::fills)
                .service(api::trades)
                .service(api::pnl)
                .service(api::websocket);
        }
        if serves_ingest {
            app = app.service(api::ingest);
        }
        app.default_service(web::to(not_found))
    })
    // Updates are small frames that must leave at once: without TCP_NODELAY, Nagle's algorithm
    // holds a frame back until the previous one is acknowledged, and with the client's delayed
    // ACK that adds up to ~40 ms (measured: p99 33 ms -> see BENCHMARKS.md).
    .on_connect(move |conn, _| {
        let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() else { return };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
        // A client that stops reading leaves its session actor unpolled (actix-web-actors runs
        // it from the socket's writes), so the hub's close and the heartbeat never reach it. The
        // kernel closes such a connection once its data sits unacknowledged this long (zero
        // window probes included), and the session ends, freeing its slot and ticket.
        if let Some(timeout) = tcp_user_timeout
            && let Err(e) = socket2::SockRef::from(tcp).set_tcp_user_timeout(Some(timeout))
        {
            tracing::warn!(error = %e, "cannot set TCP_USER_TIMEOUT");
        }
        if notsent_lowat > 0
            && let Err(e) = socket2::SockRef::from(tcp).set_tcp_notsent_lowat(notsent_lowat)
        {
            tracing::warn!(error = %e, "cannot set TCP_NOTSENT_LOWAT");
        }
    })
    // Signals are handled by the binary, which shuts the pipeline down in order.
    .disable_signals()
    .workers(2)
    .shutdown_timeout(5)
    // After a response that leaves the request unread (an oversized body refused, say), actix
    // lingers on the connection, reading and discarding what the client still sends in a busy
    // loop, then shuts it down, each for up to this long (default 1 s): a client that keeps
    // sending would hold a worker reading at full speed, and slow every session on it. 10 ms: a
    // polite client has nothing left to send by then. (A WebSocket session cut off for flooding
    // does not linger at all: its connection is dropped once the close frame is out.)
    .client_disconnect_timeout(std::time::Duration::from_millis(10))
    .bind(config.server.http_addr)
    .with_context(|| cannot_listen(config.server.http_addr, "TTPULSE_HTTP_ADDR"))?;
    let addr = server.addrs().first().copied().context("the server bound no address")?;
    let public = server.run();

    // Operations on a listener of their own (loopback by default), so that no proxy in front of
    // the public one can make them reachable by accident.
    let (admin_data, admin_auth) = (web::Data::new(pipeline.clone()), auth_for_admin);
    let admin = HttpServer::new(move || {
        App::new()
            .app_data(admin_data.clone())
            .app_data(admin_auth.clone())
            .app_data(hosts_for_admin.clone())
            .wrap(actix_web::middleware::from_fn(auth::allowed_host))
            .wrap(security_headers())
            .service(admin::health)
            .service(admin::actors)
            .service(admin::restart)
            .service(admin::metrics)
            .default_service(web::to(not_found))
    })
    .disable_signals()
    .workers(1)
    .shutdown_timeout(2)
    .bind(config.server.admin_addr)
    .with_context(|| cannot_listen(config.server.admin_addr, "TTPULSE_ADMIN_ADDR"))?;
    let admin_addr = admin.addrs().first().copied().context("the admin server bound no address")?;
    let admin = admin.run();
    let handle = Handles { public: public.handle(), admin: admin.handle() };
    let server = Box::pin(async move {
        let (public, admin) = futures_util::join!(public, admin);
        public.and(admin)
    });
    Ok(Running { addr, admin_addr, server, handle, pipeline })
}

/// Why a listener could not be bound, naming the variable that moves it.
fn cannot_listen(addr: std::net::SocketAddr, variable: &str) -> String {
    format!("cannot listen on {addr} (is another server using it? set {variable})")
}
