//! Times as the pages show them: UTC always (the server renders it), and the browser's own zone
//! beside it once the page runs in a browser. The server cannot know the browser's zone, so the
//! local half is drawn only after hydration ([`BrowserClock`]), never during it: the first
//! drawing in the browser matches the server's HTML.

use chrono::{DateTime, TimeDelta, Utc};
use leptos::prelude::*;

/// `2026-11-27 10:00:00 UTC`.
pub fn utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A duration in words a person reads at a glance: `42 s`, `5 min`, `3 h 10 min`, `2 days 4 h`.
pub fn span(d: TimeDelta) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..=119 => format!("{s} s"),
        120..=3599 => format!("{} min", s / 60),
        3600..=172_799 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} days {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Whether the page runs in a browser yet (set by the app after hydration).
#[derive(Debug, Clone, Copy)]
pub struct BrowserClock(pub RwSignal<bool>);

/// Provides [`BrowserClock`], false until the first effect runs, i.e. after hydration.
pub fn provide_browser_clock() {
    let clock = RwSignal::new(false);
    provide_context(BrowserClock(clock));
    Effect::new(move |_| clock.set(true));
}

/// The browser's UTC offset at `t`; `None` on the server.
fn browser_offset(t: DateTime<Utc>) -> Option<chrono::FixedOffset> {
    #[cfg(feature = "hydrate")]
    {
        let ms = t.timestamp_millis() as f64;
        let minutes = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms)).get_timezone_offset();
        if minutes.is_nan() {
            return None;
        }
        // getTimezoneOffset is UTC minus local, in minutes.
        chrono::FixedOffset::east_opt(-(minutes as i32) * 60)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = t;
        None
    }
}

/// `t` in the browser's zone with its offset (`2026-11-27 11:00:00 +01:00`); `None` on the
/// server, and in a browser whose zone is UTC (UTC alone says it all).
pub fn browser_time(t: DateTime<Utc>) -> Option<String> {
    let offset = browser_offset(t).filter(|o| o.local_minus_utc() != 0)?;
    Some(
        t.with_timezone(&offset)
            .format("%Y-%m-%d %H:%M:%S %:z")
            .to_string(),
    )
}

/// `t` written as a restore target in the browser's zone, to the second, with its offset
/// (`2026-11-27 11:00:00+01:00`); in UTC on the server.
pub fn as_target(t: DateTime<Utc>) -> String {
    let offset = browser_offset(t).unwrap_or_else(|| chrono::Offset::fix(&Utc));
    t.with_timezone(&offset)
        .format("%Y-%m-%d %H:%M:%S%:z")
        .to_string()
}

/// Now, by the browser's clock (`Date.now()`); `None` on the server. (`chrono::Utc::now` has no
/// clock to read in this wasm build.)
pub fn browser_now() -> Option<DateTime<Utc>> {
    #[cfg(feature = "hydrate")]
    {
        DateTime::from_timestamp_millis(js_sys::Date::now() as i64)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        None
    }
}

/// A time as the pages show it: the browser's zone first (after hydration), UTC beside it.
pub fn time_view(t: DateTime<Utc>) -> impl IntoView {
    let clock = use_context::<BrowserClock>();
    let local = move || {
        clock
            .filter(|c| c.0.get())
            .and_then(|_| browser_time(t))
            .map(|l| view! { <span class="local">{l}</span>" · " })
    };
    view! { <span class="time">{local}<span class="utc">{utc(t)}</span></span> }
}

/// [`time_view`], or a dash.
pub fn time_or_dash(t: Option<DateTime<Utc>>) -> impl IntoView {
    match t {
        Some(t) => time_view(t).into_any(),
        None => view! { <span>"—"</span> }.into_any(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_at_a_glance() {
        assert_eq!(span(TimeDelta::seconds(-3)), "0 s");
        assert_eq!(span(TimeDelta::seconds(42)), "42 s");
        assert_eq!(span(TimeDelta::seconds(600)), "10 min");
        assert_eq!(span(TimeDelta::seconds(3 * 3600 + 600)), "3 h 10 min");
        assert_eq!(
            span(TimeDelta::seconds(2 * 86_400 + 4 * 3600)),
            "2 days 4 h"
        );
    }
}
