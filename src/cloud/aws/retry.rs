//! Transient EC2 failures are absorbed here rather than handed to the CO: a throttled, 5xx or
//! lost call is tried again with jittered exponential backoff for as long as the gRPC caller
//! waits (its `grpc-timeout`, less a margin to answer in), and every call first takes a token
//! from one rate limiter shared by the whole process, which slows down while EC2 throttles and
//! speeds up again when it stops (additive increase, multiplicative decrease), so a burst of
//! PVCs does not spend the account's request budget for everyone else.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use tokio::time::Instant;

use crate::metrics::Metrics;

/// What a failed EC2 call means for trying again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// EC2 refused to do anything (throttling): safe to repeat any call.
    Throttled(String),
    /// EC2 failed on its side (5xx): it may or may not have acted.
    Server(String),
    /// No answer (timeout, dropped connection, unreadable response): it may or may not have acted.
    Lost(String),
    /// A real answer: retrying would give the same.
    Final,
}

impl Failure {
    /// Whether a call that is not idempotent may be sent again as it is.
    pub fn certainly_not_done(&self) -> bool {
        matches!(self, Failure::Throttled(_))
    }

    pub fn retryable(&self) -> bool {
        !matches!(self, Failure::Final)
    }

    /// A short label for messages: the EC2 code, or what happened to the connection.
    pub fn label(&self) -> &str {
        match self {
            Failure::Throttled(c) | Failure::Server(c) | Failure::Lost(c) => c,
            Failure::Final => "final",
        }
    }
}

/// EC2's throttling codes (and the general AWS ones its SDK knows).
const THROTTLES: [&str; 9] = [
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "EC2ThrottledException",
];

/// Codes EC2 uses for its own transient faults.
const SERVER_FAULTS: [&str; 5] = [
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "Unavailable",
    "RequestTimeout",
];

/// The label an error gets in the metrics: EC2's code, else what kind of failure it was.
fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> &str {
    match err {
        SdkError::ServiceError(s) => s.err().code().unwrap_or("Unknown"),
        SdkError::TimeoutError(_) => "Timeout",
        SdkError::DispatchFailure(_) => "DispatchFailure",
        SdkError::ResponseError(_) => "ResponseError",
        _ => "Unknown",
    }
}

pub fn classify<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Failure {
    match err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            if THROTTLES.contains(&code) || s.raw().status().as_u16() == 429 {
                Failure::Throttled(if code.is_empty() {
                    "HTTP 429".into()
                } else {
                    code.into()
                })
            } else if SERVER_FAULTS.contains(&code) || s.raw().status().is_server_error() {
                Failure::Server(if code.is_empty() {
                    format!("HTTP {}", s.raw().status().as_u16())
                } else {
                    code.into()
                })
            } else {
                Failure::Final
            }
        }
        SdkError::TimeoutError(_) => Failure::Lost("timeout".into()),
        SdkError::DispatchFailure(_) => Failure::Lost("connection failed".into()),
        SdkError::ResponseError(_) => Failure::Lost("response lost".into()),
        _ => Failure::Final,
    }
}

/// How long a call may keep retrying, and how it backs off.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// First backoff; doubled per attempt up to `max_backoff`, each with full jitter.
    pub base: Duration,
    pub max_backoff: Duration,
    /// Kept back from the caller's deadline to answer in.
    pub margin: Duration,
    /// The budget when the caller sent no deadline (`--retry-budget`).
    pub default_budget: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            base: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            margin: Duration::from_millis(500),
            default_budget: Duration::from_secs(60),
        }
    }
}

impl Policy {
    /// The instant after which no new attempt starts: the caller's deadline less the margin,
    /// or the default budget from now.
    pub fn give_up_at(&self, caller: Option<Instant>) -> Instant {
        let now = Instant::now();
        match caller {
            Some(d) => d.checked_sub(self.margin).unwrap_or(now).max(now),
            None => now + self.default_budget,
        }
    }

    /// The pause before attempt `attempt` (1 = the first retry): uniform in [0, cap], where the
    /// cap doubles from `base` to `max_backoff` ("full jitter", so retries of many callers
    /// spread out instead of arriving together).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self
            .base
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1))
            .min(self.max_backoff);
        cap.mul_f64(rand::random::<f64>())
    }
}

/// The process-wide EC2 call rate. Unlimited until EC2 throttles most of what is sent: at least
/// half of the last five seconds' answers, and at least ten of them (a stray throttle, or a
/// chance run of them under a steady share of throttling, is retried, not a reason to slow
/// everyone). Then the rate drops to half of what was being sent, and by 30 % at each further
/// throttle while that lasts, to at least `MIN_RATE`. Each call that goes through raises it by
/// 5 %, until it is high enough to lift the limit.
pub struct Limiter {
    state: Mutex<LimiterState>,
}

struct LimiterState {
    /// Calls per second allowed; None while unlimited.
    rate: Option<f64>,
    /// When the next call may start (token bucket with a burst of one).
    next: Instant,
    /// Starts in the last second, to measure the rate being sent.
    recent: VecDeque<Instant>,
    /// Answers in the last `ANSWER_WINDOW`: whether each was a throttle.
    answers: VecDeque<(Instant, bool)>,
    /// Throttles seen, for the metrics.
    throttles: u64,
    /// Retries made, for the metrics.
    retries: u64,
}

const MIN_RATE: f64 = 2.0;
const LIFT_RATE: f64 = 500.0;
/// Over which the rate being sent is measured.
const SEND_WINDOW: Duration = Duration::from_secs(1);
/// Over which the share of throttled answers is judged.
const ANSWER_WINDOW: Duration = Duration::from_secs(5);
const MIN_THROTTLES: usize = 10;

fn trim<T>(q: &mut VecDeque<T>, now: Instant, window: Duration, at: impl Fn(&T) -> Instant) {
    while q.front().is_some_and(|x| now.duration_since(at(x)) > window) {
        q.pop_front();
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter {
            state: Mutex::new(LimiterState {
                rate: None,
                next: Instant::now(),
                recent: VecDeque::new(),
                answers: VecDeque::new(),
                throttles: 0,
                retries: 0,
            }),
        }
    }
}

impl Limiter {
    fn lock(&self) -> std::sync::MutexGuard<'_, LimiterState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this call's turn.
    pub async fn acquire(&self) {
        let wait = {
            let mut s = self.lock();
            let now = Instant::now();
            trim(&mut s.recent, now, SEND_WINDOW, |t| *t);
            s.recent.push_back(now);
            match s.rate {
                None => Duration::ZERO,
                Some(rate) => {
                    let start = s.next.max(now);
                    s.next = start + Duration::from_secs_f64(1.0 / rate);
                    start - now
                }
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// EC2 throttled a call: slow down if it throttles most calls.
    pub fn throttled(&self) {
        let mut s = self.lock();
        s.throttles += 1;
        let now = Instant::now();
        trim(&mut s.answers, now, ANSWER_WINDOW, |a| a.0);
        s.answers.push_back((now, true));
        let throttled = s.answers.iter().filter(|a| a.1).count();
        if throttled < MIN_THROTTLES || throttled * 2 < s.answers.len() {
            return;
        }
        trim(&mut s.recent, now, SEND_WINDOW, |t| *t);
        let sending = s.recent.len() as f64;
        s.rate = Some(match s.rate {
            None => (sending / 2.0).max(MIN_RATE),
            Some(r) => (r * 0.7).max(MIN_RATE),
        });
    }

    /// A call went through: speed up.
    pub fn succeeded(&self) {
        let mut s = self.lock();
        let now = Instant::now();
        trim(&mut s.answers, now, ANSWER_WINDOW, |a| a.0);
        s.answers.push_back((now, false));
        if let Some(r) = s.rate {
            let faster = r * 1.05;
            s.rate = (faster < LIFT_RATE).then_some(faster);
        }
    }

    pub fn retried(&self) {
        self.lock().retries += 1;
    }

    /// The current limit (None: unlimited), throttles and retries seen.
    pub fn figures(&self) -> (Option<f64>, u64, u64) {
        let s = self.lock();
        (s.rate, s.throttles, s.retries)
    }
}

/// Sends EC2 calls through the limiter, retrying what a retry can fix within the budget.
pub struct Retrier {
    pub policy: Policy,
    pub limiter: Limiter,
    calls: Metrics,
}

impl Retrier {
    pub fn new(policy: Policy, calls: Metrics) -> Self {
        Retrier {
            policy,
            limiter: Limiter::default(),
            calls,
        }
    }

    /// Where the calls are counted.
    pub fn metrics(&self) -> &Metrics {
        &self.calls
    }

    /// The instant after which the current gRPC call stops retrying.
    pub fn give_up_at(&self) -> Instant {
        self.policy.give_up_at(crate::deadline::current())
    }

    /// One attempt: waits for the limiter, counts the call, sends it and learns from the answer.
    pub async fn attempt<T, E, Fut>(
        &self,
        op: &'static str,
        send: Fut,
    ) -> Result<T, (SdkError<E, HttpResponse>, Failure)>
    where
        E: ProvideErrorMetadata,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        self.limiter.acquire().await;
        self.calls.inc(op);
        let sent = Instant::now();
        let answer = send.await;
        let took = sent.elapsed();
        match answer {
            Ok(v) => {
                self.calls.answered(op, took, None);
                self.limiter.succeeded();
                Ok(v)
            }
            Err(e) => {
                self.calls.answered(op, took, Some(error_code(&e)));
                let failure = classify(&e);
                if matches!(failure, Failure::Throttled(_)) {
                    self.limiter.throttled();
                    self.calls.throttled(op);
                }
                Err((e, failure))
            }
        }
    }

    /// Waits before attempt `attempt` if the budget allows it; false when it does not.
    pub async fn pause(&self, op: &'static str, attempt: u32, give_up: Instant) -> bool {
        let pause = self.policy.backoff(attempt);
        if Instant::now() + pause >= give_up {
            return false;
        }
        tokio::time::sleep(pause).await;
        self.limiter.retried();
        self.calls.retried(op);
        true
    }

    /// Sends a call, repeating it while it fails transiently and the budget lasts. A call that
    /// is not `idempotent` is repeated only when EC2 certainly did nothing (throttled); a lost or
    /// failed-on-EC2's-side answer is returned for the caller to resolve.
    pub async fn send<T, E, F, Fut>(
        &self,
        op: &'static str,
        idempotent: bool,
        mut send: F,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        E: ProvideErrorMetadata,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
    {
        let give_up = self.give_up_at();
        let mut attempt = 0;
        loop {
            match self.attempt(op, send()).await {
                Ok(v) => return Ok(v),
                Err((e, failure)) => {
                    let again = failure.retryable() && (idempotent || failure.certainly_not_done());
                    attempt += 1;
                    if !again || !self.pause(op, attempt, give_up).await {
                        return Err(e);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_below_a_doubling_cap() {
        let p = Policy::default();
        for attempt in 1..12 {
            let cap = (p.base * (1 << (attempt - 1))).min(p.max_backoff);
            for _ in 0..50 {
                assert!(p.backoff(attempt) <= cap, "attempt {attempt}");
            }
        }
        assert!(p.backoff(40) <= p.max_backoff);
    }

    #[test]
    fn the_budget_is_the_callers_deadline_less_the_margin() {
        let p = Policy::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        assert_eq!(p.give_up_at(Some(deadline)), deadline - p.margin);
        // A deadline already (nearly) past leaves no time to retry, not a panic.
        assert!(p.give_up_at(Some(Instant::now())) <= Instant::now());
        assert!(p.give_up_at(None) > Instant::now() + p.default_budget / 2);
    }

    #[test]
    fn the_limiter_slows_on_sustained_throttles_and_recovers_on_successes() {
        let l = Limiter::default();
        assert_eq!(l.figures().0, None, "unlimited until EC2 throttles");
        // One throttle in five answers is retried, not a reason to slow down.
        for _ in 0..20 {
            l.succeeded();
            l.succeeded();
            l.succeeded();
            l.succeeded();
            l.throttled();
        }
        assert_eq!(l.figures().0, None, "20 % throttles leave the rate alone");
        // Everything throttled: the rate falls, to the floor and no lower.
        let l = Limiter::default();
        for _ in 0..MIN_THROTTLES {
            l.throttled();
        }
        let first = l.figures().0.expect("limited under sustained throttling");
        assert!(first >= MIN_RATE);
        for _ in 0..20 {
            l.throttled();
        }
        assert_eq!(l.figures().0, Some(MIN_RATE), "never below the floor");
        // Calls going through again raise it until the limit lifts.
        l.succeeded();
        assert!(l.figures().0.unwrap() > MIN_RATE);
        for _ in 0..200 {
            l.succeeded();
        }
        assert_eq!(l.figures().0, None, "lifted once the rate is high again");
        assert_eq!(l.figures().1, MIN_THROTTLES as u64 + 20);
    }
}
