//! Per-request resource limits and their documented defaults.
//!
//! These are the limits a tenant's guest runs under. The operator sets the
//! defaults (gateway `--config` / flags); later the control plane sets them
//! per tenant. The gateway enforces them; this module only says what they are.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits applied to every request of an app.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory one instance may grow to, in bytes (default 128 MiB).
    /// At least 4 MiB (what a small guest needs to start) and at most 4 GiB;
    /// a gateway also refuses more than its pool slots hold.
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 4194304, maximum = 4294967296_u64)
    )]
    #[serde(deserialize_with = "crate::whole::number")]
    pub memory_bytes: u64,
    /// Wall-clock deadline for the whole request, body included, in ms
    /// (default 30 000; 1 to 3 600 000).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600000))]
    #[serde(deserialize_with = "crate::whole::number")]
    pub request_timeout_ms: u64,
    /// Guest CPU time per request, in ms (default 10 000; 1 to 3 600 000).
    /// Measured in epoch ticks while wasm runs, so it is accurate to one tick.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 3600000))]
    #[serde(deserialize_with = "crate::whole::number")]
    pub cpu_time_ms: u64,
    /// Largest request body accepted, in bytes (default 10 MiB; 0 to 1 GiB).
    /// Larger gets 413.
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 1073741824))]
    #[serde(deserialize_with = "crate::whole::number")]
    pub max_request_body_bytes: u64,
    /// Requests one tenant may have in flight at once (default 100; 1 to
    /// 100 000). More get 503.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100000))]
    #[serde(deserialize_with = "crate::whole::number")]
    pub max_concurrent_requests: u32,
    /// How many of the tenant's CPU-bound guests (those that ran through a
    /// whole epoch tick) may run at once; the rest wait their turn. Unset:
    /// half the gateway's edge threads, at least 1 (1 to 1024).
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1024))]
    #[serde(deserialize_with = "crate::whole::optional")]
    pub cpu_parallelism: Option<u32>,
    /// Requests per second the tenant may make across all its apps, as a
    /// token bucket holding one second's worth. Unset: no limit (1 to
    /// 1 000 000). More get 429.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    #[serde(deserialize_with = "crate::whole::optional")]
    pub requests_per_second: Option<u32>,
    /// The same, for each app of the tenant on its own.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000000))]
    #[serde(deserialize_with = "crate::whole::optional")]
    pub app_requests_per_second: Option<u32>,
}

/// The range each limit must fall in, as (key, lowest, highest).
const RANGES: &[(&str, u64, u64)] = &[
    ("memory_bytes", 4 << 20, 4 << 30),
    ("request_timeout_ms", 1, 3_600_000),
    ("cpu_time_ms", 1, 3_600_000),
    ("max_request_body_bytes", 0, 1 << 30),
    ("max_concurrent_requests", 1, 100_000),
    ("cpu_parallelism", 1, 1024),
    ("requests_per_second", 1, 1_000_000),
    ("app_requests_per_second", 1, 1_000_000),
];

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 128 << 20,
            request_timeout_ms: 30_000,
            cpu_time_ms: 10_000,
            max_request_body_bytes: 10 << 20,
            max_concurrent_requests: 100,
            cpu_parallelism: None,
            requests_per_second: None,
            app_requests_per_second: None,
        }
    }
}

impl Limits {
    /// Refuses a limit outside what a gateway can honour, naming the key and
    /// its range.
    pub fn check(&self) -> Result<(), String> {
        let optional = |v: Option<u32>| v.map(u64::from);
        let values = [
            Some(self.memory_bytes),
            Some(self.request_timeout_ms),
            Some(self.cpu_time_ms),
            Some(self.max_request_body_bytes),
            Some(u64::from(self.max_concurrent_requests)),
            optional(self.cpu_parallelism),
            optional(self.requests_per_second),
            optional(self.app_requests_per_second),
        ];
        for ((key, low, high), value) in RANGES.iter().zip(values) {
            if let Some(value) = value
                && !(*low..=*high).contains(&value)
            {
                return Err(format!("{key} is {value}; it must be from {low} to {high}"));
            }
        }
        Ok(())
    }

    /// The request deadline, `request_timeout_ms`, as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// The CPU time allowed per request, `cpu_time_ms`, as a duration.
    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.cpu_time_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_may_be_written_as_floats_but_nothing_else() {
        let limits: Limits =
            serde_json::from_str(r#"{"cpu_time_ms": 5.0, "cpu_parallelism": 2.0}"#).unwrap();
        assert_eq!((limits.cpu_time_ms, limits.cpu_parallelism), (5, Some(2)));
        for bad in [
            r#"{"cpu_time_ms": 1.5}"#,
            r#"{"cpu_time_ms": -1}"#,
            r#"{"max_concurrent_requests": 5e12}"#,
            r#"{"cpu_time_ms": "5"}"#,
        ] {
            assert!(serde_json::from_str::<Limits>(bad).is_err(), "{bad}");
        }
        let from_toml: Limits =
            toml::from_str("cpu_time_ms = 5\nrequests_per_second = 3\n").unwrap();
        assert_eq!(
            (from_toml.cpu_time_ms, from_toml.requests_per_second),
            (5, Some(3))
        );
    }

    #[test]
    fn limits_outside_their_range_are_named() {
        assert_eq!(Limits::default().check(), Ok(()));
        let cases = [
            (
                Limits {
                    memory_bytes: 1,
                    ..Limits::default()
                },
                "memory_bytes is 1",
            ),
            (
                Limits {
                    cpu_time_ms: 0,
                    ..Limits::default()
                },
                "cpu_time_ms is 0",
            ),
            (
                Limits {
                    max_concurrent_requests: 0,
                    ..Limits::default()
                },
                "max_concurrent_requests",
            ),
            (
                Limits {
                    requests_per_second: Some(0),
                    ..Limits::default()
                },
                "requests_per_second is 0",
            ),
            (
                Limits {
                    cpu_parallelism: Some(5000),
                    ..Limits::default()
                },
                "from 1 to 1024",
            ),
        ];
        for (limits, want) in cases {
            let e = limits.check().unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
