//! The Grafana dashboard shipped in `deploy/grafana/meridian.json`, as the
//! roles' metrics tests check it: every metric it queries must be one a
//! role exports.

use std::collections::BTreeSet;

/// The dashboard's JSON, as shipped.
pub const DASHBOARD: &str = include_str!("../../../deploy/grafana/meridian.json");

/// The metrics the dashboard's queries name that start with `prefix`
/// (`meridian_edge_`), histogram series (`_bucket`, `_sum`, `_count`)
/// named by their histogram. Panics if the dashboard is not JSON or has
/// no queries: a broken dashboard is a failed test.
pub fn queried_metrics(prefix: &str) -> BTreeSet<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    collect_exprs(&dashboard, &mut exprs);
    assert!(!exprs.is_empty(), "the dashboard has no queries");
    let mut names = BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find(prefix) {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix));
            names.insert(histogram.unwrap_or(&name).to_owned());
        }
    }
    names
}

/// Every `expr` string inside `value`.
fn collect_exprs(value: &serde_json::Value, exprs: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map {
                match (key.as_str(), item) {
                    ("expr", serde_json::Value::String(expr)) => exprs.push(expr.clone()),
                    _ => collect_exprs(item, exprs),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_exprs(v, exprs)),
        _ => {}
    }
}

/// The metric families `text` (Prometheus text) declares.
pub fn exported_metrics(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}
