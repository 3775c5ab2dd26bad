//! `route`: which requests go to which cluster, and what a route changes on the way.
//!
//! Owns the compiled `Route` (its cluster, its rewrite, its counters) and building a
//! listener's matching tables ([`router`]) from its `[[routes]]`. Called by the
//! shard when a configuration arrives and by the HTTP/1.1 connection once per
//! request. Matching allocates nothing; building happens off the request path.

pub mod router;

pub use router::{HostMatch, PathMatch, RequestView, RouteMatch, Router};

use std::rc::Rc;

use crate::cluster::Cluster;
use crate::config::{PathRule, RouteConfig};
use crate::observe::stats::RouteStats;
use crate::protocol::h1;

/// One route as a shard serves it.
#[derive(Debug)]
pub struct Route {
    /// The configured name, for statistics and the access log.
    pub name: Rc<str>,
    /// The cluster that serves what it matches.
    pub cluster: Rc<Cluster>,
    /// What it changes in the request head; `None` forwards the head as parsed.
    pub rewrite: Option<Rewrite>,
    /// Its counters, kept across reloads while its name is.
    pub stats: Rc<RouteStats>,
}

/// A route's changes to the request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// The `path_prefix` removed from the target (`strip_prefix = true`).
    pub strip_prefix: Option<Box<[u8]>>,
    /// Fields added, replacing any of the same name (lower-case names).
    pub set: Box<[h1::Field]>,
    /// Fields removed (lower-case names).
    pub remove: Box<[Box<str>]>,
}

impl Rewrite {
    /// The rewrite `config` asks for, if any.
    pub fn of(config: &RouteConfig) -> Option<Rewrite> {
        if !config.has_actions() {
            return None;
        }
        let strip_prefix = match (&config.path, config.strip_prefix) {
            (Some(PathRule::Prefix(prefix)), true) => {
                // `/static/` strips like `/static`: the rest keeps its slash.
                let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
                Some(prefix.as_bytes().into())
            }
            _ => None,
        };
        Some(Rewrite {
            strip_prefix,
            set: config
                .set_request_headers
                .iter()
                .map(|(n, v)| (n.as_str().into(), v.as_bytes().into()))
                .collect(),
            remove: config
                .remove_request_headers
                .iter()
                .map(|n| n.as_str().into())
                .collect(),
        })
    }

    /// Writes `head` (as `h1::parse_request` wrote it) with these changes into `out`.
    pub fn apply(&self, head: &[u8], out: &mut Vec<u8>) {
        h1::rewrite_head(
            head,
            self.strip_prefix.as_deref(),
            &self.remove,
            &self.set,
            out,
        );
    }

    /// Whether it sets a `Host` field (so none needs adding for HTTP/1.0 clients).
    pub fn sets_host(&self) -> bool {
        self.set.iter().any(|(name, _)| &**name == "host")
    }
}

/// What a route's configuration matches, in the router's terms.
pub fn route_match(config: &RouteConfig) -> RouteMatch {
    RouteMatch {
        host: config.host.as_ref().map(|host| {
            if host.starts_with("*.") {
                HostMatch::Wildcard(host.clone())
            } else {
                HostMatch::Exact(host.clone())
            }
        }),
        path: config.path.as_ref().map(|path| match path {
            PathRule::Exact(p) => PathMatch::Exact(p.clone()),
            PathRule::Prefix(p) => PathMatch::Prefix(p.clone()),
        }),
        methods: config.methods.clone(),
        headers: config.headers.clone(),
    }
}

/// A listener's matching tables on one shard.
pub type RouteTable = Router<Rc<Route>>;

/// Builds a listener's table from its routes (in file order). `cluster` finds the
/// shard's cluster by name and `stats` a route's counters by name; a route whose
/// cluster is missing is left out (validation rules that out for files).
pub fn build_table<'c>(
    routes: &[RouteConfig],
    cluster: impl Fn(&str) -> Option<&'c Rc<Cluster>>,
    mut stats: impl FnMut(&str) -> Rc<RouteStats>,
) -> RouteTable {
    let compiled = routes
        .iter()
        .filter_map(|config| {
            let cluster = Rc::clone(cluster(&config.cluster)?);
            let route = Route {
                name: config.name.as_str().into(),
                cluster,
                rewrite: Rewrite::of(config),
                stats: stats(&config.name),
            };
            Some((route_match(config), Rc::new(route)))
        })
        .collect();
    Router::new(compiled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteConfig;

    fn rewrite(strip: Option<&str>, set: &[(&str, &str)], remove: &[&str]) -> Rewrite {
        let mut config = RouteConfig::catch_all("r", "l", "c");
        if let Some(prefix) = strip {
            config.path = Some(PathRule::Prefix(prefix.into()));
            config.strip_prefix = true;
        }
        config.set_request_headers = set
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        config.remove_request_headers = remove.iter().map(|n| n.to_string()).collect();
        Rewrite::of(&config).expect("has actions")
    }

    fn applied(rewrite: &Rewrite, head: &str) -> String {
        let mut out = Vec::new();
        rewrite.apply(head.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    const HEAD: &str =
        "GET /static/css/a.css?v=2 HTTP/1.1\r\nHost: a.test\r\nX-Old: 1\r\nAccept: */*\r\n\r\n";

    #[test]
    fn strip_prefix_keeps_the_rest_and_the_query() {
        let r = rewrite(Some("/static"), &[], &[]);
        assert_eq!(
            applied(&r, HEAD),
            "GET /css/a.css?v=2 HTTP/1.1\r\nHost: a.test\r\nX-Old: 1\r\nAccept: */*\r\n\r\n"
        );
        let exact = "GET /static HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(applied(&r, exact), "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        let query = "GET /static?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(applied(&r, query), "GET /?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        // A prefix written with its slash strips the same way.
        let r = rewrite(Some("/static/"), &[], &[]);
        assert!(applied(&r, HEAD).starts_with("GET /css/a.css?v=2 HTTP/1.1\r\n"));
        // An absolute-form target becomes origin-form.
        let absolute = "GET http://a.test/static/x HTTP/1.1\r\nHost: a.test\r\n\r\n";
        assert!(applied(&r, absolute).starts_with("GET /x HTTP/1.1\r\n"));
    }

    #[test]
    fn set_replaces_and_remove_drops_fields() {
        let r = rewrite(None, &[("x-old", "2"), ("x-new", "yes")], &["accept"]);
        assert_eq!(
            applied(&r, HEAD),
            "GET /static/css/a.css?v=2 HTTP/1.1\r\nHost: a.test\r\nx-old: 2\r\nx-new: yes\r\n\r\n"
        );
        assert!(!r.sets_host());
        assert!(rewrite(None, &[("host", "b")], &[]).sets_host());
    }

    #[test]
    fn a_route_without_actions_has_no_rewrite() {
        assert_eq!(Rewrite::of(&RouteConfig::catch_all("r", "l", "c")), None);
    }

    #[test]
    fn configs_become_router_conditions() {
        let mut config = RouteConfig::catch_all("r", "l", "c");
        config.host = Some("*.example.com".into());
        config.path = Some(PathRule::Exact("/x".into()));
        let m = route_match(&config);
        assert_eq!(m.host, Some(HostMatch::Wildcard("*.example.com".into())));
        assert_eq!(m.path, Some(PathMatch::Exact("/x".into())));
        config.host = Some("api.example.com".into());
        config.path = Some(PathRule::Prefix("/api".into()));
        let m = route_match(&config);
        assert_eq!(m.host, Some(HostMatch::Exact("api.example.com".into())));
        assert_eq!(m.path, Some(PathMatch::Prefix("/api".into())));
    }
}
