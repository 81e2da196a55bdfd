//! A subscription's charts as inline SVG, drawn on the server: deliveries per minute over the
//! last hour and per hour over the last day, stacked by outcome, and latency p50/p95 over the
//! same windows. No chart library, no JavaScript; each has a text alternative.

use chrono::{DateTime, TimeDelta, Utc};

use crate::db::models::delivery_attempt::AttemptBucket;
use crate::service::subscriptions::activity_windows;

const WIDTH: f64 = 400.0;
const HEIGHT: f64 = 150.0;
/// Room on the left for the scale's labels, and at the bottom for the times.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 20.0;
const TOP: f64 = 8.0;

/// One chart, ready to render (`partials/chart.html`).
pub struct Chart {
    /// `data-chart`, and the stem of its element ids.
    pub name: &'static str,
    pub title: String,
    /// The text alternative: what the chart shows, in a sentence or two.
    pub description: String,
    pub width: f64,
    pub height: f64,
    /// Where the plot starts on the left, its zero line, its top line, and the times' baseline.
    pub left: f64,
    pub baseline: f64,
    pub top: f64,
    pub label_y: f64,
    pub bars: Vec<Bar>,
    pub lines: Vec<Line>,
    /// The scale's top value, as labelled.
    pub top_label: String,
    pub first_label: String,
    pub last_label: String,
    /// The legend: class and text.
    pub legend: Vec<(&'static str, &'static str)>,
}

/// One bucket's stacked bar, with a tooltip.
pub struct Bar {
    pub tooltip: String,
    pub segments: Vec<Segment>,
}

/// A part of a bar: one outcome.
pub struct Segment {
    pub class: &'static str,
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

/// A polyline through the buckets' values, with a dot on each (a lone value is a dot).
pub struct Line {
    pub class: &'static str,
    pub points: String,
    pub dots: Vec<(f64, f64)>,
}

impl Chart {
    /// An empty chart of `window`: its frame, titles and time labels.
    fn framed(name: &'static str, title: &str, description: String, window: &Window<'_>) -> Self {
        Chart {
            name,
            title: title.to_owned(),
            description,
            width: WIDTH,
            height: HEIGHT,
            left: LEFT,
            baseline: HEIGHT - BOTTOM,
            top: TOP,
            label_y: HEIGHT - 4.0,
            bars: Vec::new(),
            lines: Vec::new(),
            top_label: String::new(),
            first_label: (window.label)(window.start),
            last_label: "now".to_owned(),
            legend: Vec::new(),
        }
    }
}

/// Every bucket of a window, empty ones included.
struct Window<'a> {
    start: DateTime<Utc>,
    step: TimeDelta,
    count: usize,
    buckets: &'a [AttemptBucket],
    label: fn(DateTime<Utc>) -> String,
}

impl Window<'_> {
    fn slots(&self) -> Vec<(DateTime<Utc>, Option<&AttemptBucket>)> {
        (0..self.count)
            .map(|slot| {
                let at = self.start + self.step * i32::try_from(slot).unwrap_or(i32::MAX);
                (at, self.buckets.iter().find(|bucket| bucket.bucket == at))
            })
            .collect()
    }

    fn x(&self, slot: usize) -> f64 {
        LEFT + (WIDTH - LEFT) * slot as f64 / self.count as f64
    }

    fn slot_width(&self) -> f64 {
        (WIDTH - LEFT) / self.count as f64
    }
}

/// A scale top at or above `max`: 1, 2 or 5 times a power of ten.
fn nice_top(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|step| step * magnitude)
        .find(|top| *top >= max)
        .unwrap_or(10.0 * magnitude)
}

fn y(value: f64, top: f64) -> f64 {
    HEIGHT - BOTTOM - (HEIGHT - BOTTOM - TOP) * (value / top).min(1.0)
}

fn total(bucket: &AttemptBucket) -> i64 {
    bucket.succeeded + bucket.refused + bucket.server_error + bucket.no_answer
}

fn deliveries(name: &'static str, title: &str, window: &Window<'_>) -> Chart {
    let slots = window.slots();
    let top = nice_top(
        slots
            .iter()
            .filter_map(|(_, bucket)| bucket.map(total))
            .max()
            .unwrap_or(0) as f64,
    );
    let width = (window.slot_width() - 1.0).max(1.0);
    let bars = slots
        .iter()
        .enumerate()
        .filter_map(|(slot, (at, bucket))| {
            let bucket = (*bucket)?;
            let mut base = 0.0;
            let mut segments = Vec::new();
            for (class, count) in [
                ("seg-ok", bucket.succeeded),
                ("seg-refused", bucket.refused),
                ("seg-error", bucket.server_error),
                ("seg-none", bucket.no_answer),
            ] {
                if count == 0 {
                    continue;
                }
                let low = y(base, top);
                base += count as f64;
                let high = y(base, top);
                segments.push(Segment {
                    class,
                    x: window.x(slot),
                    y: high,
                    width,
                    height: (low - high).max(0.5),
                });
            }
            Some(Bar {
                tooltip: format!(
                    "{}: {} attempts: {} delivered, {} refused (3xx/4xx), {} server errors, {} without an answer",
                    (window.label)(*at),
                    total(bucket),
                    bucket.succeeded,
                    bucket.refused,
                    bucket.server_error,
                    bucket.no_answer
                ),
                segments,
            })
        })
        .collect();
    let (attempts, delivered) = window.buckets.iter().fold((0, 0), |(all, ok), bucket| {
        (all + total(bucket), ok + bucket.succeeded)
    });
    let description = match attempts {
        0 => format!("{title}: no delivery attempts."),
        1 => format!(
            "{title}: 1 delivery attempt, {}.",
            if delivered == 1 {
                "delivered (2xx)"
            } else {
                "not delivered"
            }
        ),
        _ => format!(
            "{title}: {attempts} delivery attempts, {delivered} of them delivered (2xx), {} not.",
            attempts - delivered
        ),
    };
    Chart {
        bars,
        top_label: format!("{top}"),
        legend: vec![
            ("seg-ok", "2xx"),
            ("seg-refused", "3xx/4xx"),
            ("seg-error", "5xx"),
            ("seg-none", "no answer"),
        ],
        ..Chart::framed(name, title, description, window)
    }
}

fn latency(name: &'static str, title: &str, window: &Window<'_>) -> Chart {
    let slots = window.slots();
    let top = nice_top(
        window
            .buckets
            .iter()
            .map(|bucket| bucket.p95_ms)
            .fold(0.0, f64::max),
    );
    let line = |class: &'static str, pick: fn(&AttemptBucket) -> f64| {
        let dots: Vec<(f64, f64)> = slots
            .iter()
            .enumerate()
            .filter_map(|(slot, (_, bucket))| {
                let value = pick((*bucket)?);
                Some((window.x(slot) + window.slot_width() / 2.0, y(value, top)))
            })
            .collect();
        Line {
            class,
            points: dots
                .iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect::<Vec<_>>()
                .join(" "),
            dots,
        }
    };
    let worst = window.buckets.iter().map(|b| b.p95_ms).fold(0.0, f64::max);
    let description = if window.buckets.is_empty() {
        format!("{title}: no delivery attempts.")
    } else {
        format!("{title}: the slowest period's p95 was {worst:.0} ms.")
    };
    Chart {
        lines: vec![
            line("line-p50", |bucket| bucket.p50_ms),
            line("line-p95", |bucket| bucket.p95_ms),
        ],
        top_label: format!("{top} ms"),
        legend: vec![("line-p50", "p50"), ("line-p95", "p95")],
        ..Chart::framed(name, title, description, window)
    }
}

/// The four charts of a subscription, from its last hour's and last day's buckets.
pub fn subscription_charts(
    now: DateTime<Utc>,
    hour: &[AttemptBucket],
    day: &[AttemptBucket],
) -> Vec<Chart> {
    let (minute_start, hour_start) = activity_windows(now);
    let last_hour = Window {
        start: minute_start,
        step: TimeDelta::minutes(1),
        count: 60,
        buckets: hour,
        label: |at| at.format("%H:%M UTC").to_string(),
    };
    let last_day = Window {
        start: hour_start,
        step: TimeDelta::hours(1),
        count: 24,
        buckets: day,
        label: |at| at.format("%H:00 UTC").to_string(),
    };
    vec![
        deliveries(
            "deliveries-hour",
            "Deliveries per minute, last hour",
            &last_hour,
        ),
        deliveries(
            "deliveries-day",
            "Deliveries per hour, last 24 hours",
            &last_day,
        ),
        latency(
            "latency-hour",
            "Delivery latency per minute, last hour",
            &last_hour,
        ),
        latency(
            "latency-day",
            "Delivery latency per hour, last 24 hours",
            &last_day,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(at: DateTime<Utc>, ok: i64, failed: i64) -> AttemptBucket {
        AttemptBucket {
            bucket: at,
            succeeded: ok,
            refused: 0,
            server_error: failed,
            no_answer: 0,
            p50_ms: 20.0,
            p95_ms: 180.0,
        }
    }

    #[test]
    fn scales_end_on_round_numbers() {
        assert_eq!(nice_top(0.0), 1.0);
        assert_eq!(nice_top(3.0), 5.0);
        assert_eq!(nice_top(10.0), 10.0);
        assert_eq!(nice_top(11.0), 20.0);
        assert_eq!(nice_top(180.0), 200.0);
    }

    #[test]
    fn a_bucket_stacks_its_outcomes_and_says_them_in_words() {
        use chrono::DurationRound;
        let now = Utc::now();
        let current = now.duration_trunc(TimeDelta::minutes(1)).unwrap();
        let charts = subscription_charts(now, &[bucket(current, 3, 1)], &[]);
        let deliveries = &charts[0];
        assert_eq!(deliveries.name, "deliveries-hour");
        assert_eq!(deliveries.bars.len(), 1);
        let segments = &deliveries.bars[0].segments;
        assert_eq!(segments.len(), 2);
        assert!(segments[1].y < segments[0].y, "5xx stacks on top of 2xx");
        assert!(
            deliveries
                .description
                .contains("4 delivery attempts, 3 of them delivered")
        );
        assert!(deliveries.bars[0].tooltip.contains("1 server errors"));
        // The newest bucket is drawn in the last slot.
        assert!(segments[0].x > WIDTH - 20.0);
        assert!(
            charts[1].bars.is_empty(),
            "nothing in the last day's buckets"
        );
        assert!(charts[3].description.contains("no delivery attempts"));
        assert!(charts[2].lines[1].points.contains(','));
    }
}
