//! Drives a run: one task per worker, each taking tickets from the
//! [`Pacer`], choosing a host and a request, sending it on its lane and
//! recording the outcome; then merges what the workers recorded.

use crate::client::{Failure, Lane};
use crate::pacer::Pacer;
use crate::picker::Picker;
use crate::progress::Progress;
use crate::recorder::{Outcome, Second, Timeline, WorkerRecorder, WorkerTotals};
use crate::scenario::{LoadModel, Plan, Protocol};
use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::Full;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a run measured.
pub struct RunResult {
    pub totals: WorkerTotals,
    pub seconds: Vec<Second>,
    /// Length of the measured phase, from its start until the last worker stopped.
    pub elapsed: Duration,
}

/// Runs `plan` to completion.
pub async fn run(plan: Arc<Plan>, progress: Option<Progress>) -> anyhow::Result<RunResult> {
    let addr = tokio::net::lookup_host(&plan.authority)
        .await
        .with_context(|| format!("resolving {}", plan.authority))?
        .next()
        .with_context(|| format!("{} resolved to no address", plan.authority))?;
    let requests = Arc::new(Requests::new(&plan)?);
    let pacer = Arc::new(Pacer::new(&plan, Instant::now()));
    let timeline = Arc::new(Timeline::new(pacer.measure_from()));
    let progress = progress.map(|p| p.spawn(timeline.clone()));
    let lanes = Lane::for_workers(addr, plan.protocol, plan.workers(), plan.streams);
    let mut tasks = Vec::with_capacity(lanes.len());
    for (index, lane) in lanes.into_iter().enumerate() {
        let worker = Worker {
            plan: plan.clone(),
            requests: requests.clone(),
            pacer: pacer.clone(),
            picker: Picker::new(&plan, index)?,
            lane,
            recorder: WorkerRecorder::new(timeline.clone()),
        };
        tasks.push(tokio::spawn(worker.run()));
    }
    let mut totals = WorkerTotals::empty();
    for task in tasks {
        totals.merge(task.await.context("a worker panicked")?);
    }
    let elapsed = Instant::now().saturating_duration_since(pacer.measure_from());
    if let Some(progress) = progress {
        progress.finish().await;
    }
    let timeline = Arc::into_inner(timeline).context("the timeline is still shared")?;
    Ok(RunResult {
        totals,
        seconds: timeline.into_seconds(),
        elapsed,
    })
}

struct Worker {
    plan: Arc<Plan>,
    requests: Arc<Requests>,
    pacer: Arc<Pacer>,
    picker: Picker,
    lane: Lane,
    recorder: WorkerRecorder,
}

impl Worker {
    async fn run(mut self) -> WorkerTotals {
        while let Some(ticket) = self.pacer.next() {
            let from = match ticket.due {
                Some(due) => {
                    tokio::time::sleep_until(due.into()).await;
                    due
                }
                None => Instant::now(),
            };
            let request = self
                .requests
                .build(self.picker.host(), self.picker.request());
            let result = tokio::time::timeout(self.plan.timeout, self.lane.send(request)).await;
            let to = Instant::now();
            let outcome = match result {
                Ok(Ok(status)) => Outcome::Status(status),
                Ok(Err(failure)) => {
                    let refused = matches!(failure, Failure::Connect(_) | Failure::Handshake);
                    if refused && self.plan.model == LoadModel::Closed {
                        // Do not spin on a target that is not there.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Outcome::Failed(failure.label())
                }
                Err(_) => Outcome::Failed(Failure::Timeout.label()),
            };
            if ticket.measured {
                self.recorder.record(from, to, outcome);
            }
        }
        self.recorder.finish()
    }
}

/// The parts of every request that do not change between sends.
struct Requests {
    protocol: Protocol,
    hosts: Vec<HeaderValue>,
    mix: Vec<PreparedRequest>,
}

struct PreparedRequest {
    spec: crate::scenario::RequestSpec,
    path: Uri,
}

impl Requests {
    fn new(plan: &Plan) -> anyhow::Result<Requests> {
        let hosts = plan
            .hosts
            .iter()
            .map(|h| {
                if plan.protocol == Protocol::Http2 {
                    h.parse::<http::uri::Authority>()
                        .with_context(|| format!("host {h:?} cannot be an HTTP/2 :authority"))?;
                }
                HeaderValue::from_str(h).with_context(|| format!("host {h:?}"))
            })
            .collect::<anyhow::Result<_>>()?;
        let mix = plan
            .mix
            .iter()
            .map(|spec| {
                Ok(PreparedRequest {
                    path: spec.path.parse()?,
                    spec: spec.clone(),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Requests {
            protocol: plan.protocol,
            hosts,
            mix,
        })
    }

    /// Request `mix` of the mix for host `host`. HTTP/1 names the host in
    /// `Host`; HTTP/2 in the `:authority` of an absolute URI.
    fn build(&self, host: usize, mix: usize) -> Request<Full<Bytes>> {
        let prepared = &self.mix[mix];
        let spec = &prepared.spec;
        let host = &self.hosts[host];
        let mut builder = Request::builder().method(spec.method.clone());
        builder = match self.protocol {
            Protocol::Http1 => builder
                .uri(prepared.path.clone())
                .header(http::header::HOST, host.clone()),
            Protocol::Http2 => builder.uri(
                Uri::builder()
                    .scheme("http")
                    .authority(host.as_bytes())
                    .path_and_query(spec.path.as_str())
                    .build()
                    .expect("host and path were checked"),
            ),
        };
        for (name, value) in &spec.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(spec.body.clone()))
            .expect("request parts were checked")
    }
}
