//! The simulated inference engine: continuous batching as vLLM does it, with
//! time standing in for the GPU.
//!
//! At most `batch_size` sequences run at once; the rest wait in arrival
//! order. A sequence admitted to the batch spends `time_to_first_token`
//! (its prefill) before its first token, then gets one token every
//! `1 / tokens_per_second` until it has `max_tokens`. A sequence whose
//! [`Sequence`] is dropped (its client went away) leaves the batch or the
//! queue at once, and the first waiting one takes its slot.
//!
//! One task owns the state. It sleeps until the next token is due or a
//! command arrives, so an idle engine costs nothing. Tokens go to each
//! sequence over a bounded channel; a client that does not keep up stalls
//! its own sequence (it keeps its slot) rather than growing a buffer.

use super::metrics::EngineMetrics;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Tokens a sequence may have produced and its client not yet taken.
const TOKEN_BUFFER: usize = 32;

/// Longest wait the engine schedules, so that no flag can overflow an `Instant`.
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// What every answer says, word by word, over and over.
const WORDS: [&str; 16] = [
    "sluice", "stands", "in", "for", "a", "language", "model", "and", "every", "word", "here",
    "is", "made", "up", "on", "cue",
];

#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Sequences decoded together.
    pub batch_size: usize,
    /// Prefill: from admission to the first token.
    pub time_to_first_token: Duration,
    /// Decode pace of each running sequence.
    pub tokens_per_second: f64,
    /// Tokens the KV cache holds; `kv_cache_usage_perc` is the share of it
    /// that running sequences (their prompt and what they generated) take.
    pub kv_cache_tokens: u64,
}

/// A handle to the engine task; the task ends when the last handle and
/// sequence are gone.
pub struct Engine {
    commands: mpsc::UnboundedSender<Command>,
    next_id: AtomicU64,
}

/// One generated token.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// 0 for the first token of the sequence.
    pub index: u32,
    /// The sequence's last token (it reached `max_tokens`).
    pub last: bool,
}

/// A request's place in the engine: its tokens arrive here. Dropping it
/// cancels the sequence.
pub struct Sequence {
    id: u64,
    tokens: mpsc::Receiver<Token>,
    commands: mpsc::UnboundedSender<Command>,
    finished: bool,
}

enum Command {
    Submit(Submitted),
    Cancel(u64),
}

struct Submitted {
    id: u64,
    prompt_tokens: u32,
    max_tokens: u32,
    arrived: Instant,
    tokens: mpsc::Sender<Token>,
}

struct Running {
    sequence: Submitted,
    generated: u32,
    next_token_at: Instant,
}

/// The engine task's state.
struct Batch {
    settings: EngineSettings,
    token_interval: Duration,
    metrics: EngineMetrics,
    running: Vec<Running>,
    waiting: VecDeque<Submitted>,
}

// === impl Token ===

impl Token {
    /// The text this token adds to the answer.
    pub fn text(&self) -> String {
        let word = WORDS[self.index as usize % WORDS.len()];
        if self.index == 0 {
            word.to_string()
        } else {
            format!(" {word}")
        }
    }
}

// === impl Engine ===

impl Engine {
    /// Starts the engine task on the current runtime.
    pub fn start(settings: EngineSettings, metrics: EngineMetrics) -> Engine {
        let (commands, received) = mpsc::unbounded_channel();
        tokio::spawn(Batch::new(settings, metrics).run(received));
        Engine {
            commands,
            next_id: AtomicU64::new(1),
        }
    }

    /// Queues a sequence of `max_tokens` (at least 1) after a prompt of
    /// `prompt_tokens`.
    pub fn submit(&self, prompt_tokens: u32, max_tokens: u32) -> Sequence {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, tokens) = mpsc::channel(TOKEN_BUFFER);
        let submitted = Submitted {
            id,
            prompt_tokens,
            max_tokens: max_tokens.max(1),
            arrived: Instant::now(),
            tokens: sender,
        };
        // If the task is gone, the sender is dropped with the command and
        // the sequence ends without tokens.
        let _ = self.commands.send(Command::Submit(submitted));
        Sequence {
            id,
            tokens,
            commands: self.commands.clone(),
            finished: false,
        }
    }
}

// === impl Sequence ===

impl Sequence {
    /// The next token; `None` once the last one was taken (or the engine is gone).
    pub fn poll_token(&mut self, cx: &mut Context<'_>) -> Poll<Option<Token>> {
        let token = std::task::ready!(self.tokens.poll_recv(cx));
        if token.as_ref().is_none_or(|t| t.last) {
            self.finished = true;
        }
        Poll::Ready(token)
    }

    pub async fn next_token(&mut self) -> Option<Token> {
        std::future::poll_fn(|cx| self.poll_token(cx)).await
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.commands.send(Command::Cancel(self.id));
        }
    }
}

// === impl Batch ===

impl Batch {
    fn new(settings: EngineSettings, metrics: EngineMetrics) -> Batch {
        let tokens_per_second = settings.tokens_per_second;
        let token_interval = if tokens_per_second.is_finite() && tokens_per_second > 0.0 {
            Duration::try_from_secs_f64(1.0 / tokens_per_second).unwrap_or(LONGEST_WAIT)
        } else {
            LONGEST_WAIT
        };
        Batch {
            settings: EngineSettings {
                batch_size: settings.batch_size.max(1),
                time_to_first_token: settings.time_to_first_token.min(LONGEST_WAIT),
                kv_cache_tokens: settings.kv_cache_tokens.max(1),
                ..settings
            },
            token_interval: token_interval.min(LONGEST_WAIT),
            metrics,
            running: Vec::new(),
            waiting: VecDeque::new(),
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        loop {
            let next_due = self.running.iter().map(|r| r.next_token_at).min();
            let due = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Submit(sequence)) => self.submit(sequence),
                    Some(Command::Cancel(id)) => self.cancel(id),
                    None => return,
                },
                () = due => self.step(Instant::now()),
            }
        }
    }

    fn submit(&mut self, sequence: Submitted) {
        self.waiting.push_back(sequence);
        self.admit(Instant::now());
    }

    fn cancel(&mut self, id: u64) {
        self.running.retain(|r| r.sequence.id != id);
        self.waiting.retain(|s| s.id != id);
        self.admit(Instant::now());
    }

    /// Gives every sequence due by `now` its next token; the finished (and
    /// the abandoned) leave.
    fn step(&mut self, now: Instant) {
        let interval = self.token_interval;
        let metrics = &self.metrics;
        self.running.retain_mut(|running| {
            if running.next_token_at > now {
                return true;
            }
            let token = Token {
                index: running.generated,
                last: running.generated + 1 >= running.sequence.max_tokens,
            };
            match running.sequence.tokens.try_send(token) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    // The client is behind: this sequence skips the step.
                    running.next_token_at = now + interval;
                    return true;
                }
                // The client is gone; its cancel is on its way.
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
            if running.generated == 0 {
                let waited = now - running.sequence.arrived;
                metrics.time_to_first_token.observe(waited.as_secs_f64());
                metrics
                    .prompt_tokens
                    .inc_by(running.sequence.prompt_tokens.into());
            }
            running.generated += 1;
            metrics.generation_tokens.inc();
            // From when it was due, not from now, so a late step does not
            // slow the pace down.
            running.next_token_at += interval;
            let finished = running.generated >= running.sequence.max_tokens;
            if finished {
                metrics.request_success.inc();
            }
            !finished
        });
        self.admit(now);
    }

    /// Moves waiting sequences into free slots, then reports the state.
    fn admit(&mut self, now: Instant) {
        while self.running.len() < self.settings.batch_size {
            let Some(sequence) = self.waiting.pop_front() else {
                break;
            };
            self.running.push(Running {
                sequence,
                generated: 0,
                next_token_at: now + self.settings.time_to_first_token,
            });
        }
        self.report();
    }

    fn report(&self) {
        let held: u64 = self
            .running
            .iter()
            .map(|r| u64::from(r.sequence.prompt_tokens) + u64::from(r.generated))
            .sum();
        let usage = (held as f64 / self.settings.kv_cache_tokens as f64).min(1.0);
        self.metrics.running.set(self.running.len() as i64);
        self.metrics.waiting.set(self.waiting.len() as i64);
        self.metrics.kv_cache_usage.set(usage);
    }
}

#[cfg(test)]
mod tests;
