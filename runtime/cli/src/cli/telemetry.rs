//! What the `cella` program tells about itself: logs on stderr, readable lines by default or
//! JSON lines (`--log-format json`), filtered by `CELLA_LOG` (`tracing_subscriber`'s
//! `EnvFilter` syntax); and, with `cella serve --otlp-endpoint URL`, its spans exported over
//! OTLP/HTTP (protobuf) to a collector.
//!
//! The node's spans (`cella_node::trace` and the spans of the command path) are `DEBUG`
//! spans of the `cella_*` crates. The log filter's default keeps them off, so without an
//! exporter they are disabled where they are made: no span is recorded or allocated. With one,
//! the OpenTelemetry layer takes exactly those spans (not the logs), batches them and sends
//! them from the SDK's own thread through a hyper client that runs on the program's tokio
//! runtime. The W3C trace-context propagator is installed with it, which the node uses to read
//! `traceparent` from requests and to send it on to other nodes.

use std::{fmt, future::Future, pin::Pin, time::Duration};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use opentelemetry::{KeyValue, trace::TracerProvider as _};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, propagation::TraceContextPropagator, trace::SdkTracerProvider};
use tracing_subscriber::{
    EnvFilter, Layer, filter::filter_fn, layer::SubscriberExt, util::SubscriberInitExt,
};

/// What is logged when `CELLA_LOG` is not set: warnings, and the facts a node states when it
/// starts (target `cella::serve`). openraft's warnings are left out (it warns on every start,
/// e.g. about votes of an earlier term, and once per heartbeat while a peer is down); its
/// errors stay, and `CELLA_LOG=warn` shows the rest.
pub(super) const DEFAULT_LOG: &str = "warn,openraft=error,cella::serve=info";

/// The target of the lines a node prints about itself when it starts and stops.
pub(super) const SERVE: &str = "cella::serve";

/// How logs are written on stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's
    /// other fields.
    Json,
}

/// Where and as what this process exports its spans.
#[derive(Clone, Debug)]
pub(super) struct Otlp {
    /// The collector's base URL (`http://HOST:4318`) or its traces URL (`.../v1/traces`).
    pub endpoint: String,
    /// The node's id (`service.instance.id`, `cella.node.id`).
    pub node_id: u64,
    /// The node's address (`cella.node.addr`).
    pub addr: String,
}

/// The installed exporter, flushed by [`Telemetry::shutdown`].
pub(super) struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans not yet exported and stops the exporter.
    pub(super) async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // The flush waits for the SDK's thread, whose requests run on this runtime.
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = flushed {
                tracing::warn!("exporting the last spans: {e}");
            }
        }
    }
}

/// Installs the logger (and the span exporter when `otlp` is given) for the whole process.
/// Must run within the tokio runtime.
pub(super) fn init(format: LogFormat, otlp: Option<Otlp>) -> anyhow::Result<Telemetry> {
    let filter =
        EnvFilter::try_from_env("CELLA_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let provider = otlp.as_ref().map(tracer_provider).transpose()?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    let tracer = provider.as_ref().map(|p| p.tracer("cella"));
    subscriber(format, filter, std::io::stderr, tracer)
        .try_init()
        .context("cannot install the logger")?;
    Ok(Telemetry { provider })
}

/// The logger writing to `writer`, with the OpenTelemetry layer over `tracer` if given: it
/// takes only the spans of the `cella_*` crates (at most `DEBUG`), never the logs.
fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    let spans = tracer.map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_filter(filter_fn(|meta| {
                meta.is_span()
                    && meta.target().starts_with("cella")
                    && *meta.level() <= tracing::Level::DEBUG
            }))
    });
    tracing_subscriber::registry().with(logs).with(spans)
}

/// The traces URL of `--otlp-endpoint`: `/v1/traces` is added to a base URL.
fn traces_url(endpoint: &str) -> anyhow::Result<String> {
    let endpoint = endpoint.trim_end_matches('/');
    let uri: hyper::Uri = endpoint
        .parse()
        .with_context(|| format!("--otlp-endpoint `{endpoint}` is not a URL"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        bail!(
            "--otlp-endpoint `{endpoint}` must be an http:// URL with a host (OTLP/HTTP, \
             protobuf)\nhint: e.g. --otlp-endpoint http://127.0.0.1:4318 (an OpenTelemetry \
             collector's OTLP/HTTP receiver)"
        );
    }
    Ok(if endpoint.ends_with("/v1/traces") {
        endpoint.to_string()
    } else {
        format!("{endpoint}/v1/traces")
    })
}

/// A batch exporter to `otlp.endpoint`, its spans marked with the service and the node.
fn tracer_provider(otlp: &Otlp) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(RuntimeClient::new())
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(&otlp.endpoint)?)
        .with_timeout(Duration::from_secs(10))
        .build()
        .context("cannot set up the OTLP exporter")?;
    let resource = Resource::builder()
        .with_service_name("cella")
        .with_attributes([
            KeyValue::new("service.instance.id", otlp.node_id.to_string()),
            KeyValue::new("cella.node.id", otlp.node_id as i64),
            KeyValue::new("cella.node.addr", otlp.addr.clone()),
        ])
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The exporter's HTTP client: hyper on the program's tokio runtime. The SDK calls it from a
/// thread of its own, outside the runtime, so each request is spawned onto the runtime and
/// awaited from there.
struct RuntimeClient {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl RuntimeClient {
    fn new() -> RuntimeClient {
        RuntimeClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            runtime: tokio::runtime::Handle::current(),
        }
    }
}

impl fmt::Debug for RuntimeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RuntimeClient")
    }
}

/// Exporting stops waiting for a collector that does not answer.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Answers larger than this from a collector are not read.
const MAX_ANSWER: usize = 1 << 20;

impl HttpClient for RuntimeClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let (head, body) = request.into_parts();
            let request = hyper::Request::from_parts(head, Full::new(body));
            let exchange = async {
                let response = client.request(request).await?;
                let (head, body) = response.into_parts();
                let body = http_body_util::Limited::new(body, MAX_ANSWER)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(head, body))
            };
            match tokio::time::timeout(EXPORT_TIMEOUT, exchange).await {
                Ok(answer) => answer,
                Err(_) => Err(HttpError::from(format!(
                    "the collector did not answer within {EXPORT_TIMEOUT:?}"
                ))),
            }
        });
        Box::pin(async move { sent.await.map_err(HttpError::from)? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_url_comes_from_a_base_or_a_full_url() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://c:4318/v1/traces/").unwrap(),
            "http://c:4318/v1/traces"
        );
        let error = format!("{:#}", traces_url("https://c:4318").unwrap_err());
        assert!(error.contains("must be an http:// URL"), "{error}");
        assert!(traces_url("not a url").is_err());
    }

    /// Without an exporter the command path's spans (`DEBUG`, `cella_*`) are disabled where
    /// they are made, under the default filter and as JSON too; with one they are recorded,
    /// and the logs stay as filtered.
    #[test]
    fn spans_are_off_without_an_exporter() {
        let made = || tracing::debug_span!(target: "cella_node::http", "http.request");
        for format in [LogFormat::Text, LogFormat::Json] {
            let quiet = subscriber(format, EnvFilter::new(DEFAULT_LOG), std::io::sink, None);
            tracing::subscriber::with_default(quiet, || {
                assert!(made().is_disabled());
                assert!(tracing::Span::current().is_disabled());
            });
        }
        let tracer = SdkTracerProvider::builder().build().tracer("test");
        let traced = subscriber(
            LogFormat::Text,
            EnvFilter::new(DEFAULT_LOG),
            std::io::sink,
            Some(tracer),
        );
        tracing::subscriber::with_default(traced, || {
            assert!(!made().is_disabled());
            // Other crates' spans are not exported.
            assert!(tracing::debug_span!(target: "openraft::core", "x").is_disabled());
        });
    }
}
