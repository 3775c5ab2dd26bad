//! `config::env`: `RINGLB_<SECTION>_<KEY>` overrides.
//!
//! Owns the list of keys the environment may override and their types, and writes
//! overrides into the parsed TOML table before it is converted, so they go through
//! the same checks as the file. Errors name the variable.

use crate::config::error::ConfigError;

/// The type an environment override is converted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Integer,
    Text,
    Boolean,
}

/// Sections that only the short form has; in the full form they live in each
/// `[[clusters]]` entry.
const SHORT_FORM_ONLY: [&str; 5] = [
    "balancer",
    "health_check",
    "retry",
    "circuit_breaker",
    "upstream",
];

/// Every key the environment may override, by section.
pub(super) const OVERRIDABLE: &[(&str, &[(&str, Kind)])] = &[
    (
        "server",
        &[
            ("listen", Kind::Text),
            ("shards", Kind::Integer),
            ("io", Kind::Text),
            ("max_connections", Kind::Integer),
            ("transparent_huge_pages", Kind::Boolean),
        ],
    ),
    ("admin", &[("listen", Kind::Text), ("token", Kind::Text)]),
    (
        "timeouts",
        &[
            ("connect", Kind::Text),
            ("header_read", Kind::Text),
            ("idle", Kind::Text),
            ("backend_response", Kind::Text),
            ("shutdown_grace", Kind::Text),
            ("tunnel_idle", Kind::Text),
        ],
    ),
    (
        "limits",
        &[
            ("max_header_bytes", Kind::Integer),
            ("max_headers", Kind::Integer),
            ("max_body_bytes", Kind::Integer),
        ],
    ),
    (
        "upstream",
        &[
            ("max_idle_per_backend", Kind::Integer),
            ("idle_timeout", Kind::Text),
            ("protocol", Kind::Text),
            ("h2_max_streams", Kind::Integer),
        ],
    ),
    (
        "balancer",
        &[
            ("strategy", Kind::Text),
            ("ewma_decay", Kind::Text),
            ("hash_key", Kind::Text),
            ("hash_algorithm", Kind::Text),
            ("virtual_nodes", Kind::Integer),
            ("table_size", Kind::Integer),
        ],
    ),
    (
        "logging",
        &[
            ("level", Kind::Text),
            ("format", Kind::Text),
            ("access_log", Kind::Boolean),
        ],
    ),
    (
        "health_check",
        &[
            ("kind", Kind::Text),
            ("path", Kind::Text),
            ("interval", Kind::Text),
            ("timeout", Kind::Text),
            ("expect_status", Kind::Text),
            ("unhealthy_threshold", Kind::Integer),
            ("healthy_threshold", Kind::Integer),
            ("start", Kind::Text),
            ("slow_start", Kind::Text),
            ("service", Kind::Text),
        ],
    ),
    (
        "retry",
        &[
            ("max_retries", Kind::Integer),
            ("max_buffered_body", Kind::Integer),
            ("budget_percent", Kind::Integer),
        ],
    ),
    (
        "circuit_breaker",
        &[
            ("enabled", Kind::Boolean),
            ("failure_threshold", Kind::Integer),
            ("open_for", Kind::Text),
            ("half_open_probes", Kind::Integer),
            ("count_5xx", Kind::Boolean),
        ],
    ),
];

/// Applies `RINGLB_<SECTION>_<KEY>` overrides to the table.
pub(super) fn apply_env<I>(table: &mut toml::Table, env: I) -> Vec<ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut errors = Vec::new();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("RINGLB_") else {
            continue;
        };
        if rest == "LOG" || rest.starts_with("TEST_") {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        let found = OVERRIDABLE.iter().find_map(|(section, keys)| {
            let key = lower.strip_prefix(section)?.strip_prefix('_')?;
            let (key, kind) = keys.iter().find(|(k, _)| *k == key)?;
            Some((*section, *key, *kind))
        });
        let file = format!("env {name}");
        let full_form = ["listeners", "routes", "clusters"]
            .iter()
            .any(|k| table.contains_key(*k));
        let short_only = |section: &str, key: &str| {
            SHORT_FORM_ONLY.contains(&section) || (section == "server" && key == "listen")
        };
        if let Some((section, key, _)) = found.filter(|(s, k, _)| full_form && short_only(s, k)) {
            errors.push(ConfigError {
                file,
                key: format!("{section}.{key}"),
                message: "applies to the short form only, and this file has [[listeners]], \
                          [[routes]] or [[clusters]]: set it in the file, on each cluster or \
                          listener"
                    .into(),
            });
            continue;
        }
        let Some((section, key, kind)) = found else {
            errors.push(ConfigError {
                file,
                key: "-".into(),
                message: "not a known setting (expected RINGLB_<SECTION>_<KEY>, e.g. RINGLB_BALANCER_STRATEGY)".into(),
            });
            continue;
        };
        let value = match kind {
            Kind::Text => toml::Value::String(raw),
            Kind::Boolean => match raw.trim() {
                "true" => toml::Value::Boolean(true),
                "false" => toml::Value::Boolean(false),
                _ => {
                    errors.push(ConfigError {
                        file,
                        key: format!("{section}.{key}"),
                        message: format!("expected true or false, got {raw:?}"),
                    });
                    continue;
                }
            },
            Kind::Integer => match raw.trim().parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => {
                    errors.push(ConfigError {
                        file,
                        key: format!("{section}.{key}"),
                        message: format!("expected an integer, got {raw:?}"),
                    });
                    continue;
                }
            },
        };
        let entry = table
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key.to_string(), value);
            }
            _ => errors.push(ConfigError {
                file,
                key: section.into(),
                message: "expected a table".into(),
            }),
        }
    }
    errors
}
