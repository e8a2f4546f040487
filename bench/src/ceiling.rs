//! The ceiling: the least an HTTP server on the same stack as the hub (axum on tokio) can do for
//! a scenario. It answers every request with the hub's own answer to one request of that
//! scenario, after reading the request body and parsing it as JSON the way the hub must before
//! any NGSI-LD work. Hub throughput over ceiling throughput, measured in the same run on the
//! same machine, is how much of the stack's capacity the NGSI-LD work leaves.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use tokio::runtime::Runtime;

use crate::check::Reply;

/// The hub's answer, replayed for every request (of its method).
#[derive(Debug, Clone)]
pub struct Canned {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Canned {
    /// Keeps what a client reads from the hub's answer; the server adds date and length itself.
    pub fn of(reply: &Reply) -> Canned {
        let kept = ["content-type", "location", "link", "ngsild-results-count"];
        let headers =
            reply.headers.iter().filter(|(name, _)| kept.contains(&name.as_str())).map(|(n, v)| (n.clone(), v.clone()));
        Canned { status: reply.status, headers: headers.collect(), body: reply.body.clone() }
    }
}

/// A running ceiling server; stops when dropped.
pub struct Ceiling {
    pub addr: SocketAddr,
    runtime: Option<Runtime>,
}

impl Ceiling {
    /// Starts on 127.0.0.1 on a free port, on a runtime of its own (a multi-threaded one with the
    /// default worker count, like the hub's) so it never shares threads with the load generator.
    /// `canned` holds the answer to replay per request method; a method it does not name gets
    /// the first.
    pub fn start(canned: Vec<(Method, Canned)>, max_body_bytes: usize) -> anyhow::Result<Ceiling> {
        anyhow::ensure!(!canned.is_empty(), "the ceiling needs an answer to replay");
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ceiling").build()?;
        let app =
            Router::new().fallback(answer).layer(DefaultBodyLimit::max(max_body_bytes)).with_state(Arc::new(canned));
        runtime.spawn(async move {
            match tokio::net::TcpListener::from_std(listener) {
                Ok(listener) => {
                    if let Err(e) = axum::serve(listener, app).await {
                        eprintln!("the ceiling server stopped: {e}");
                    }
                }
                Err(e) => eprintln!("the ceiling server cannot listen: {e}"),
            }
        });
        Ok(Ceiling { addr, runtime: Some(runtime) })
    }
}

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn answer(State(answers): State<Arc<Vec<(Method, Canned)>>>, method: Method, body: Bytes) -> Response {
    if !body.is_empty() && serde_json::from_slice::<serde_json::Value>(&body).is_err() {
        return plain(StatusCode::BAD_REQUEST, Bytes::from_static(b"{\"title\":\"invalid JSON\"}"));
    }
    let canned = answers.iter().find(|(m, _)| *m == method).unwrap_or(&answers[0]).1.clone();
    let mut response = plain(canned.status, canned.body.clone());
    for (name, value) in &canned.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

fn plain(status: StatusCode, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}
