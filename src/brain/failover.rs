//! The provider chain: retries with exponential backoff and jitter (honouring Retry-After and
//! Gemini's RetryInfo), then the next configured provider, with a circuit breaker per provider.

use std::time::Duration;

use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    BrainSettings, ChatRequest, Collector, Completion, Endpoint, Message, ProviderError, ProviderKind, anthropic,
    endpoint, gemini, openai,
};
use crate::agent::AgentEvent;
use crate::app::AppState;

#[derive(Debug, Clone, thiserror::Error)]
pub enum BrainError {
    /// No provider has a key / base URL: a sentence telling the owner how to set one.
    #[error("{0}")]
    NoProvider(String),
    /// Every configured provider failed: one sentence for the user.
    #[error("{0}")]
    AllFailed(String),
    /// The stream broke after tokens already reached the client.
    #[error("{provider} stopped in the middle of its answer ({error}); please ask again.", provider = .provider.name())]
    Interrupted { provider: ProviderKind, error: ProviderError },
    #[error("cancelled")]
    Cancelled,
}

const NO_PROVIDER: &str = "No AI provider is configured: set GEMINI_API_KEY, ANTHROPIC_API_KEY or OPENAI_BASE_URL, \
                           or add a provider key in the settings.";

/// The providers of the chain that are configured right now, in order.
pub async fn configured_chain(state: &AppState, settings: &BrainSettings) -> Vec<Endpoint> {
    let mut chain = Vec::new();
    for kind in settings.chain() {
        if let Some(ep) = endpoint(state, kind).await {
            chain.push(ep);
        }
    }
    chain
}

/// One model call through the chain. Text is streamed to `sink` as it arrives.
pub async fn complete(
    state: &AppState,
    request: &ChatRequest,
    sink: Option<&mpsc::Sender<AgentEvent>>,
    cancel: &CancellationToken,
) -> Result<Completion, BrainError> {
    let settings = BrainSettings::load(&state.store).await;
    let chain = configured_chain(state, &settings).await;
    complete_in(state, &settings, &chain, request, sink, cancel).await
}

/// [`complete`] with settings and chain already resolved (once per agent turn, not per call).
pub async fn complete_in(
    state: &AppState,
    settings: &BrainSettings,
    chain: &[Endpoint],
    request: &ChatRequest,
    sink: Option<&mpsc::Sender<AgentEvent>>,
    cancel: &CancellationToken,
) -> Result<Completion, BrainError> {
    if chain.is_empty() {
        return Err(BrainError::NoProvider(NO_PROVIDER.into()));
    }
    let brain = &state.brain;
    let mut failures: Vec<String> = Vec::new();
    for ep in chain {
        let kind = ep.kind;
        if brain.breaker_open(kind) {
            failures.push(format!("{} is paused after repeated failures", kind.name()));
            continue;
        }
        let model = settings.model(&state.config, kind, request.tier);
        let attempts = settings.retry_attempts();
        let mut last: Option<ProviderError> = None;
        for attempt in 0..attempts {
            let mut collector = Collector::new(sink);
            let call = call_once(brain, ep, request, &model, &mut collector);
            let outcome = tokio::select! {
                biased;
                _ = cancel.cancelled() => return Err(BrainError::Cancelled),
                outcome = call => outcome,
            };
            match outcome {
                Ok(()) => {
                    brain.record_success(kind);
                    metrics::counter!("nexus_brain_requests_total", "provider" => kind.name(), "outcome" => "ok")
                        .increment(1);
                    return Ok(collector.finish(kind, model));
                }
                Err(error) => {
                    metrics::counter!("nexus_brain_requests_total", "provider" => kind.name(), "outcome" => "error")
                        .increment(1);
                    tracing::warn!(provider = kind.name(), %model, attempt, %error, "provider call failed");
                    // Every failed request counts towards the breaker, retries included.
                    brain.record_failure(kind, settings.breaker_threshold(), settings.breaker_cooldown());
                    if collector.emitted {
                        // Never retry once tokens reached the client: it already shows the start of
                        // an answer, and a second attempt would write a different answer after it
                        // (and bill the tokens twice). The user is told to ask again instead.
                        return Err(BrainError::Interrupted { provider: kind, error });
                    }
                    let wait = backoff(settings, attempt, error.retry_after());
                    let retry = error.retryable() && attempt + 1 < attempts && wait <= settings.retry_max_wait();
                    last = Some(error);
                    if !retry {
                        break;
                    }
                    metrics::counter!("nexus_brain_retries_total", "provider" => kind.name()).increment(1);
                    tokio::select! {
                        _ = cancel.cancelled() => return Err(BrainError::Cancelled),
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        metrics::counter!("nexus_brain_failovers_total", "from" => kind.name()).increment(1);
        if let Some(error) = last {
            failures.push(format!("{} {}", kind.name(), describe(&error)));
        }
    }
    Err(BrainError::AllFailed(format!(
        "No AI provider could answer right now ({}); please try again in a minute.",
        failures.join(", ")
    )))
}

/// Exponential backoff with ±20 % jitter, capped at 30 s; a server-given delay wins.
fn backoff(settings: &BrainSettings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(delay) = retry_after {
        return delay;
    }
    let base = settings.retry_base().as_secs_f64() * 2f64.powi(attempt.min(16) as i32);
    let jitter = rand::rng().random_range(0.8..1.2);
    Duration::from_secs_f64((base * jitter).min(30.0))
}

/// A short reason for the one sentence the user sees.
fn describe(error: &ProviderError) -> String {
    match error {
        ProviderError::Http { status: 429, .. } => "is rate-limited".into(),
        ProviderError::Http { status: 401 | 403, .. } => "refused the key".into(),
        ProviderError::Http { status: 529, .. } => "is overloaded".into(),
        ProviderError::Http { status, .. } if *status >= 500 => format!("had a server error ({status})"),
        ProviderError::Http { status, .. } => format!("refused the request ({status})"),
        ProviderError::Transport(_) => "is unreachable".into(),
        ProviderError::Stream { .. } => "broke off its answer".into(),
        ProviderError::Protocol(_) => "answered in an unexpected format".into(),
    }
}

async fn call_once(
    brain: &super::Brain,
    ep: &Endpoint,
    request: &ChatRequest,
    model: &str,
    collector: &mut Collector<'_>,
) -> Result<(), ProviderError> {
    match ep.kind {
        ProviderKind::Gemini if collector.streams() => gemini::stream(&brain.http, ep, request, model, collector).await,
        ProviderKind::Gemini => gemini::generate(&brain.http, ep, request, model, collector).await,
        ProviderKind::Anthropic => anthropic::stream(&brain.http, ep, request, model, collector).await,
        ProviderKind::Openai => openai::stream(&brain.http, ep, request, model, collector).await,
    }
}

/// Tokens of a request as the first available provider counts them (Gemini `countTokens`,
/// Anthropic `count_tokens`); the OpenAI-compatible API has no such call, so it is estimated.
pub async fn count_tokens(state: &AppState, request: &ChatRequest) -> u64 {
    let estimate =
        request.messages.iter().map(Message::estimate_tokens).sum::<u64>() + (request.system.len() as u64) / 4;
    let settings = BrainSettings::load(&state.store).await;
    for ep in configured_chain(state, &settings).await {
        if state.brain.breaker_open(ep.kind) {
            continue;
        }
        let model = settings.model(&state.config, ep.kind, request.tier);
        let counted = match ep.kind {
            ProviderKind::Gemini => gemini::count_tokens(&state.brain.http, &ep, request, &model).await,
            ProviderKind::Anthropic => anthropic::count_tokens(&state.brain.http, &ep, request, &model).await,
            ProviderKind::Openai => return estimate,
        };
        match counted {
            Ok(n) => return n,
            Err(e) => tracing::debug!(provider = ep.kind.name(), error = %e, "token count failed; estimating"),
        }
    }
    estimate
}

/// An embedding of `text` by the first configured provider that has an embedding API. The
/// returned id (`provider:model`) says which vectors are comparable.
pub async fn embed(state: &AppState, text: &str) -> Option<(String, Vec<f32>)> {
    let settings = BrainSettings::load(&state.store).await;
    for ep in configured_chain(state, &settings).await {
        let Some(model) = settings.embedding_model(ep.kind) else { continue };
        if state.brain.breaker_open(ep.kind) {
            continue;
        }
        let result = match ep.kind {
            ProviderKind::Gemini => gemini::embed(&state.brain.http, &ep, &model, text).await,
            ProviderKind::Openai => openai::embed(&state.brain.http, &ep, &model, text).await,
            ProviderKind::Anthropic => continue,
        };
        match result {
            Ok(vector) if !vector.is_empty() => return Some((format!("{}:{model}", ep.kind.name()), vector)),
            Ok(_) => {}
            Err(e) => tracing::warn!(provider = ep.kind.name(), error = %e, "embedding failed"),
        }
    }
    None
}
