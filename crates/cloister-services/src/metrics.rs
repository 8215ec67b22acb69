//! `GET /metrics` in Prometheus's text format: requests and latency per API route and status,
//! tokens issued, token exchanges allowed and denied, attestation failures by reason.
//!
//! Routes are labelled by their template (`/v1/projects/{project}`), never the raw path, so
//! the number of series stays bounded whatever clients send. The endpoint needs no credential,
//! as Prometheus scrapes it; it holds counts, no names or secrets.

use std::sync::Mutex;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: String,
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    /// Access tokens, attestation tokens, registry tokens, service-account tokens.
    pub tokens_issued: Family<KindLabels, Counter>,
    pub exchanges: Family<DecisionLabels, Counter>,
    pub attestation_failures: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            // 0.5 ms … ~16 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        let tokens_issued = Family::<KindLabels, Counter>::default();
        let exchanges = Family::<DecisionLabels, Counter>::default();
        let attestation_failures = Family::<ReasonLabels, Counter>::default();
        let mut registry = Registry::with_prefix("cloister");
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Tokens issued, by kind",
            tokens_issued.clone(),
        );
        registry.register(
            "sts_exchanges",
            "STS token exchanges, by decision",
            exchanges.clone(),
        );
        registry.register(
            "attestation_failures",
            "verifyAttestation refusals, by reason",
            attestation_failures.clone(),
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            tokens_issued,
            exchanges,
            attestation_failures,
        }
    }
}

impl Metrics {
    pub fn token(&self, kind: &str) {
        self.tokens_issued
            .get_or_create(&KindLabels { kind: kind.into() })
            .inc();
    }

    pub fn exchange(&self, allowed: bool) {
        let decision = if allowed { "allow" } else { "deny" };
        self.exchanges
            .get_or_create(&DecisionLabels {
                decision: decision.into(),
            })
            .inc();
    }

    pub fn attestation_failure(&self, reason: &str) {
        self.attestation_failures
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// Counts and times every request by its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method: method.clone(),
            route: route.clone(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&RouteLabels { method, route })
        .observe(started.elapsed().as_secs_f64());
    response
}
