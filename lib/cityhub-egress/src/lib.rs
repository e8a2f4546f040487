//! Where cityhub may send requests, and the one way it sends them.
//!
//! `rules` is pure: the kinds of addresses, `--egress-allow`/`--egress-deny`, and the decision
//! on one destination. This crate root is the I/O part: [`Egress::client`] builds every HTTP
//! client the hub uses to reach a URL a client named (@context fetches, notifications, context
//! sources and anything later), and [`Egress::mqtt_options`] every MQTT connection.
//!
//! # How a request is checked
//!
//! [`EgressClient::execute`] judges the URL (scheme; an address written as such, with its port;
//! deny rules naming the host), then sends it with the port of the hop in a task-local. The
//! client's DNS resolver is this crate's: it resolves the name, judges every address it got with
//! that port, and hands the connector only the allowed ones (so a name that resolves, or is
//! rebound, to 127.0.0.1 is caught after resolution, where it counts). The client's redirect
//! policy judges every hop's URL the same way and moves the task-local to the hop's port. The
//! client uses no proxy. A refusal surfaces as [`EgressError::Refused`]; other failures as one
//! neutral text each, so an answer never tells what (if anything) listens at an address.
//!
//! **May:** resolve names, open connections to allowed addresses. **Never:** connect before
//! judging the address connected to; build a client or a connection in any other crate (clippy's
//! `disallowed_methods` in clippy.toml refuses `reqwest::Client::builder`/`new` and
//! `rumqttc::MqttOptions::new` elsewhere, and `no_client_is_built_elsewhere` greps for them).

#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod rules;

use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub use rules::{classify, parse_list, Class, Reason, Refusal, Rule, Rules};

tokio::task_local! {
    /// The port of the hop being sent, for the resolver (which is handed a name only).
    static HOP_PORT: Cell<Option<u16>>;
}

/// Whether an address is one of this machine's: binding a socket to it succeeds.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// The hub's egress rules and the clients built under them (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Egress {
    rules: Arc<Rules>,
}

/// How an HTTP client behaves (everything but where it may go).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The whole request, body included.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Redirects followed (each judged as the first URL); 0 follows none.
    pub max_redirects: usize,
    /// The flag that sets `max_redirects`, named when it is passed (empty: a fixed limit).
    pub redirects_flag: &'static str,
    /// Header names as written (`Via`, not `via`): some receivers read them case-sensitively.
    pub title_case_headers: bool,
    pub pool_idle_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 0,
            redirects_flag: "",
            title_case_headers: false,
            pool_idle_timeout: None,
        }
    }
}

/// Why an outgoing request did not get an answer. Its text is neutral: the same for every
/// unreachable address, whatever the network said.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("refused by the hub's egress rules (--egress-allow, --egress-deny)")]
    Refused(Refusal),
    #[error("could not be reached (no connection, or no answer in time)")]
    Unreachable,
    #[error("{0}")]
    Redirect(String),
    #[error("the request failed before an answer was read")]
    Failed,
}

impl EgressError {
    /// The refusal, when the rules refused.
    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            EgressError::Refused(r) => Some(r),
            _ => None,
        }
    }

    fn of(e: &reqwest::Error) -> EgressError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(inner) = source {
            if let Some(refusal) = inner.downcast_ref::<Refusal>() {
                return EgressError::Refused(refusal.clone());
            }
            if let Some(RedirectRefused(text)) = inner.downcast_ref::<RedirectRefused>() {
                return EgressError::Redirect(text.clone());
            }
            source = inner.source();
        }
        if e.is_timeout() || e.is_connect() {
            EgressError::Unreachable
        } else {
            EgressError::Failed
        }
    }
}

/// A redirect the policy does not follow (too many, not http(s), a downgrade).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct RedirectRefused(String);

/// The host and port of a URL (the scheme's default port when none is written).
fn host_port(url: &reqwest::Url) -> Option<(String, u16)> {
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port().or(match url.scheme() {
        "http" => Some(80),
        "https" => Some(443),
        "mqtt" => Some(1883),
        "mqtts" => Some(8883),
        _ => None,
    })?;
    Some((host, port))
}

impl Egress {
    pub fn new(rules: Rules) -> Egress {
        Egress { rules: Arc::new(rules) }
    }

    /// The rules for a URL the operator named on the command line (the JWKS of `--auth-jwks`):
    /// any address may be reached, the city's own network included, since no client of the hub
    /// can choose it. Never for a URL that arrives in a request.
    pub fn operator() -> Egress {
        let anywhere = parse_list("0.0.0.0/0,::/0").unwrap_or_default();
        Egress::new(Rules::new(anywhere, vec![], vec![]))
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The decision on a URL whose host is an address, or a deny rule naming its host (names
    /// are judged again once resolved).
    fn judge_url(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        let scheme = url.scheme();
        if !matches!(scheme, "http" | "https" | "mqtt") {
            return Err(Refusal {
                address: url.host_str().unwrap_or("").to_owned(),
                reason: Reason::Scheme(scheme.to_owned()),
                allow_with: None,
                loopback_only: self.rules.loopback_only(),
            });
        }
        let Some((host, port)) = host_port(url) else { return Ok(()) };
        match host.parse::<IpAddr>() {
            Ok(ip) => self.rules.decide(None, ip, Some(port), &is_local),
            Err(_) => self.rules.decide_name(&host, Some(port)),
        }
    }

    /// Judges an endpoint a client gives (a notification endpoint, a registration's endpoint)
    /// as it would be connected to: its name resolved, every address judged. A name that does
    /// not resolve now passes (it is judged again at every connection).
    pub async fn vet(&self, uri: &str) -> Result<(), Refusal> {
        let Ok(url) = reqwest::Url::parse(uri) else { return Ok(()) };
        self.judge_url(&url)?;
        let Some((host, port)) = host_port(&url) else { return Ok(()) };
        if host.parse::<IpAddr>().is_ok() {
            return Ok(());
        }
        let lookup = tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((host.as_str(), port)));
        let Ok(Ok(addrs)) = lookup.await else { return Ok(()) };
        for addr in addrs {
            self.rules.decide(Some(&host), addr.ip(), Some(port), &is_local)?;
        }
        Ok(())
    }

    /// The addresses of `host:port` the rules allow (for a connection this crate does not open
    /// itself); none allowed is the last refusal.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        resolve_allowed(&self.rules, host, Some(port)).await.map_err(|e| match e {
            Resolved::Refused(r) => EgressError::Refused(r),
            Resolved::Failed => EgressError::Unreachable,
        })
    }

    /// An HTTP client under the rules.
    #[expect(clippy::disallowed_methods, reason = "the one place an outgoing HTTP client is built")]
    pub fn client(&self, options: &ClientOptions) -> EgressClient {
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(Arc::new(Resolver { rules: self.rules.clone() }))
            .redirect(self.redirects(options))
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout);
        if options.title_case_headers {
            builder = builder.http1_title_case_headers();
        }
        if let Some(idle) = options.pool_idle_timeout {
            builder = builder.pool_idle_timeout(idle);
        }
        let http = match builder.build() {
            Ok(http) => http,
            Err(e) => {
                // Only a missing TLS backend fails here; a client that can do nothing would
                // hide it, so it is told, and requests then fail as unreachable.
                tracing_free_log(&format!("the outgoing HTTP client could not be built: {e}"));
                reqwest::Client::default()
            }
        };
        EgressClient { http, egress: self.clone() }
    }

    fn redirects(&self, options: &ClientOptions) -> reqwest::redirect::Policy {
        let (max, flag, egress) = (options.max_redirects, options.redirects_flag, self.clone());
        if max == 0 {
            return reqwest::redirect::Policy::none();
        }
        reqwest::redirect::Policy::custom(move |attempt| {
            let refused = RedirectRefused;
            if attempt.previous().len() > max {
                let set_by = if flag.is_empty() { String::new() } else { format!(", set by {flag}") };
                return attempt.error(refused(format!("more than {max} redirects (the hub's limit{set_by})")));
            }
            let url = attempt.url().clone();
            if !matches!(url.scheme(), "http" | "https") {
                return attempt.error(refused(format!("redirected to {url}, which is not an http(s) URL")));
            }
            if url.scheme() == "http" && attempt.previous().iter().any(|u| u.scheme() == "https") {
                return attempt.error(refused(format!(
                    "redirected from https to {url}: a downgrade to plain http is not followed"
                )));
            }
            if let Err(refusal) = egress.judge_url(&url) {
                return attempt.error(refusal);
            }
            let port = host_port(&url).map(|(_, p)| p);
            // Outside `execute` (no task-local) the resolver judges for every port.
            let _ = HOP_PORT.try_with(|hop| hop.set(port));
            attempt.follow()
        })
    }

    /// MQTT 3.1.1 options for a broker at `host:port`, connecting to an address the rules allow.
    #[expect(clippy::disallowed_methods, reason = "the one place an outgoing MQTT connection is set up")]
    pub async fn mqtt_options(
        &self,
        client_id: &str,
        host: &str,
        port: u16,
    ) -> Result<rumqttc::MqttOptions, EgressError> {
        let addr = self.mqtt_address(host, port).await?;
        Ok(rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port()))
    }

    /// MQTT 5 options for a broker at `host:port`, connecting to an address the rules allow.
    #[expect(clippy::disallowed_methods, reason = "the one place an outgoing MQTT connection is set up")]
    pub async fn mqtt5_options(
        &self,
        client_id: &str,
        host: &str,
        port: u16,
    ) -> Result<rumqttc::v5::MqttOptions, EgressError> {
        let addr = self.mqtt_address(host, port).await?;
        Ok(rumqttc::v5::MqttOptions::new(client_id, addr.ip().to_string(), addr.port()))
    }

    async fn mqtt_address(&self, host: &str, port: u16) -> Result<SocketAddr, EgressError> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            self.rules.decide(None, ip, Some(port), &is_local).map_err(EgressError::Refused)?;
            return Ok(SocketAddr::new(ip, port));
        }
        self.rules.decide_name(host, Some(port)).map_err(EgressError::Refused)?;
        self.resolve(host, port).await?.into_iter().next().ok_or(EgressError::Unreachable)
    }
}

/// No logging dependency here: a build failure goes to stderr once.
fn tracing_free_log(text: &str) {
    #[expect(clippy::print_stderr, reason = "start-up only, and without a logger in this crate")]
    {
        eprintln!("cityhub-egress: {text}");
    }
}

enum Resolved {
    Refused(Refusal),
    Failed,
}

/// Resolves `host` and keeps the addresses the rules allow at `port` (unknown: for every port).
async fn resolve_allowed(rules: &Rules, host: &str, port: Option<u16>) -> Result<Vec<SocketAddr>, Resolved> {
    let addrs = tokio::net::lookup_host((host, port.unwrap_or(0))).await.map_err(|_| Resolved::Failed)?;
    let mut allowed = Vec::new();
    let mut refused = None;
    for addr in addrs {
        match rules.decide(Some(host), addr.ip(), port, &is_local) {
            Ok(()) => allowed.push(addr),
            Err(r) => refused = Some(r),
        }
    }
    match (allowed.is_empty(), refused) {
        (false, _) => Ok(allowed),
        (true, Some(r)) => Err(Resolved::Refused(r)),
        (true, None) => Err(Resolved::Failed),
    }
}

/// The resolver of every egress client: names resolved, then judged.
struct Resolver {
    rules: Arc<Rules>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let port = HOP_PORT.try_with(Cell::get).ok().flatten();
        let (rules, host) = (self.rules.clone(), name.as_str().to_owned());
        Box::pin(async move {
            match resolve_allowed(&rules, &host, port).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs),
                Err(Resolved::Refused(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                Err(Resolved::Failed) => Err("the name did not resolve".into()),
            }
        })
    }
}

/// An HTTP client under the egress rules. Build requests with `get`/`post`/`request`, send them
/// with [`EgressClient::execute`].
#[derive(Clone)]
pub struct EgressClient {
    http: reqwest::Client,
    egress: Egress,
}

impl EgressClient {
    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.get(url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.post(url)
    }

    pub fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        self.http.request(method, url)
    }

    /// Sends a request built with this client, after judging its URL; inside a request the hub
    /// serves, with that request's `traceparent`.
    pub async fn execute(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, EgressError> {
        let mut request = request.build().map_err(|_| EgressError::Failed)?;
        self.egress.judge_url(request.url()).map_err(EgressError::Refused)?;
        // Sent while serving a request: its trace goes on (W3C trace context), unless the caller
        // set one.
        if let Some(trace) = cityhub_metrics::trace::current() {
            if !request.headers().contains_key("traceparent") {
                if let Ok(value) = reqwest::header::HeaderValue::from_str(&trace.header()) {
                    request.headers_mut().insert("traceparent", value);
                }
            }
        }
        let port = host_port(request.url()).map(|(_, p)| p);
        HOP_PORT.scope(Cell::new(port), self.http.execute(request)).await.map_err(|e| EgressError::of(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn egress(allow: &str, listen: &str) -> Egress {
        Egress::new(Rules::new(parse_list(allow).unwrap(), vec![], vec![listen.parse().unwrap()]))
    }

    /// A one-shot HTTP server on loopback answering `answer` to every request; its port.
    async fn serve(answer: String) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for _ in 0..8 {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        port
    }

    fn ok() -> String {
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok".to_owned()
    }

    fn redirect_to(location: &str) -> String {
        format!("HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    }

    fn options() -> ClientOptions {
        let _ = rustls::crypto::ring::default_provider().install_default();
        ClientOptions { max_redirects: 5, redirects_flag: "--test-redirects", ..ClientOptions::default() }
    }

    #[tokio::test]
    async fn a_loopback_hub_reaches_loopback_by_address_and_by_name_but_not_itself() {
        let port = serve(ok()).await;
        let client = egress("", "127.0.0.1:1").client(&options());
        let answer = client.execute(client.get(&format!("http://127.0.0.1:{port}/"))).await.unwrap();
        assert_eq!(answer.status(), 200);
        let answer = client.execute(client.get(&format!("http://localhost:{port}/"))).await.unwrap();
        assert_eq!(answer.status(), 200);
        // The hub's own address, by address and by a name resolving to it.
        let own = egress("", &format!("127.0.0.1:{port}")).client(&options());
        for url in [format!("http://127.0.0.1:{port}/"), format!("http://localhost:{port}/")] {
            let e = own.execute(own.get(&url)).await.unwrap_err();
            assert_eq!(e.refusal().map(|r| &r.reason), Some(&Reason::OwnAddress), "{url}: {e:?}");
            assert_eq!(e.to_string(), "refused by the hub's egress rules (--egress-allow, --egress-deny)");
        }
    }

    #[tokio::test]
    async fn a_non_loopback_hub_refuses_loopback_after_resolution_and_at_redirects() {
        let port = serve(ok()).await;
        let client = egress("", "0.0.0.0:1").client(&options());
        for url in [
            format!("http://127.0.0.1:{port}/"),
            format!("http://localhost:{port}/"),
            format!("http://[::ffff:127.0.0.1]:{port}/"),
        ] {
            let e = client.execute(client.get(&url)).await.unwrap_err();
            assert!(matches!(e.refusal().map(|r| &r.reason), Some(Reason::Class(Class::Loopback))), "{url}: {e:?}");
        }
        // Allowed once configured.
        let allowed = egress(&format!("127.0.0.1:{port}"), "0.0.0.0:1").client(&options());
        let answer = allowed.execute(allowed.get(&format!("http://127.0.0.1:{port}/"))).await.unwrap();
        assert_eq!(answer.status(), 200);
        // A redirect from an allowed server to a refused address is not followed.
        let target = serve(ok()).await;
        let hop = serve(redirect_to(&format!("http://127.0.0.1:{target}/secret"))).await;
        let allowing_hop = egress(&format!("127.0.0.1:{hop}"), "0.0.0.0:1").client(&options());
        let e = allowing_hop.execute(allowing_hop.get(&format!("http://127.0.0.1:{hop}/"))).await.unwrap_err();
        assert!(matches!(e.refusal().map(|r| &r.reason), Some(Reason::Class(Class::Loopback))), "{e:?}");
        let metadata = serve(redirect_to("http://169.254.169.254/latest/meta-data/")).await;
        let e = allowing_hop.execute(allowing_hop.get(&format!("http://127.0.0.1:{metadata}/"))).await;
        // (Not allowed at that port: refused at the first URL.)
        assert!(e.unwrap_err().refusal().is_some());
    }

    #[tokio::test]
    async fn an_unreachable_address_reads_the_same_however_it_fails() {
        // A closed port on loopback (connection refused) reads as unreachable, like a timeout.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = egress("", "127.0.0.1:1").client(&options());
        let e = client.execute(client.get(&format!("http://127.0.0.1:{closed}/"))).await.unwrap_err();
        assert!(matches!(e, EgressError::Unreachable), "{e:?}");
        assert!(!e.to_string().contains("refused") && !e.to_string().contains(&closed.to_string()), "{e}");
    }

    #[tokio::test]
    async fn endpoints_are_vetted_with_their_names_resolved() {
        let hub = egress("", "0.0.0.0:1026");
        for uri in [
            "http://169.254.169.254/latest",
            "http://127.0.0.1:22/",
            "http://localhost:8080/x",
            "mqtt://127.0.0.1/t",
            "http://[::1]:80/",
        ] {
            let e = hub.vet(uri).await.unwrap_err();
            assert!(e.detail().contains("--egress-allow"), "{uri}: {}", e.detail());
        }
        assert_eq!(hub.vet("http://127.0.0.1:1026/ngsi-ld/v1/entities").await.unwrap_err().reason, Reason::OwnAddress);
        assert!(hub.vet("ftp://8.8.8.8/").await.is_err());
        assert!(hub.vet("http://8.8.8.8/").await.is_ok());
        // A name that does not resolve now is judged when it is connected to.
        assert!(hub.vet("http://nowhere.invalid/").await.is_ok());
        let loopback_hub = egress("", "127.0.0.1:1026");
        assert!(loopback_hub.vet("http://localhost:8085/").await.is_ok());
        assert_eq!(loopback_hub.vet("http://localhost:1026/").await.unwrap_err().reason, Reason::OwnAddress);
        assert!(loopback_hub.mqtt_options("c", "localhost", 1883).await.is_ok());
        assert!(hub.mqtt_options("c", "localhost", 1883).await.is_err());
    }

    #[test]
    fn no_client_is_built_elsewhere() {
        // Every outgoing HTTP client and MQTT connection of the hub is built here; the tests,
        // the bench and the `cityhub federate` command talk to a hub and are exempt.
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut offenders = Vec::new();
        let mut dirs = vec![root.join("lib"), root.join("cli/src")];
        let forbidden = ["reqwest::Client::builder", "reqwest::Client::new", "Client::builder()", "MqttOptions::new("];
        let mut seen = 0;
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    if !path.ends_with("cityhub-egress") && !path.ends_with("tests") && !path.ends_with("target") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs") {
                    seen += 1;
                    let text = std::fs::read_to_string(&path).unwrap();
                    let exempt = text.contains("reason = \"a command-line client");
                    if !exempt && forbidden.iter().any(|f| text.contains(f)) {
                        offenders.push(path.display().to_string());
                    }
                }
            }
        }
        assert!(seen > 50, "the sources were found ({seen} files)");
        assert!(offenders.is_empty(), "build outgoing clients with cityhub_egress::Egress, not in {offenders:?}");
    }
}
