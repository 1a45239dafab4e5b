//! Exponential backoff for retries: the one schedule behind every "wait, then try again" of
//! the consumer (MongoDB outages, dead-letter sends, joins waiting for their activity).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Delays that double from `first` up to `max`.
#[derive(Clone, Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Starts at `first`, never waits longer than `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { next: first, max }
    }

    /// The delay to wait now; the one after it is twice as long, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Sleeps for the next delay. False when `stop` came first.
    pub async fn wait(&mut self, stop: &CancellationToken) -> bool {
        let d = self.next_delay();
        tokio::select! {
            _ = stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }
}

/// Runs `attempt` until it succeeds, calling `failed(error, attempt number, delay)` before each
/// wait. `None` when `stop` came during a wait: the caller must not act as if it succeeded.
pub async fn retry<T, E, F, Fut>(
    stop: &CancellationToken,
    mut backoff: Backoff,
    mut attempt: F,
    mut failed: impl FnMut(&E, u32, Duration),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut n = 0u32;
    loop {
        match attempt().await {
            Ok(v) => return Some(v),
            Err(e) => {
                n += 1;
                let delay = backoff.next;
                failed(&e, n, delay);
                if !backoff.wait(stop).await {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(500));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 400, 500, 500]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_returns_the_first_success_and_reports_each_failure() {
        let stop = CancellationToken::new();
        let mut calls = 0;
        let mut seen = Vec::new();
        let got = retry(
            &stop,
            Backoff::new(Duration::from_millis(10), Duration::from_secs(1)),
            || {
                calls += 1;
                let n = calls;
                async move {
                    if n < 3 {
                        Err(n)
                    } else {
                        Ok("done")
                    }
                }
            },
            |e: &i32, attempt, delay| seen.push((*e, attempt, delay.as_millis())),
        )
        .await;
        assert_eq!(got, Some("done"));
        assert_eq!(seen, [(1, 1, 10), (2, 2, 20)]);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_gives_up_when_stopped() {
        let stop = CancellationToken::new();
        stop.cancel();
        let got: Option<()> = retry(
            &stop,
            Backoff::new(Duration::from_secs(1), Duration::from_secs(1)),
            || async { Err::<(), _>("down") },
            |_, _, _| {},
        )
        .await;
        assert_eq!(got, None);
    }
}
