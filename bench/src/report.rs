//! Showing results: a table on stdout for people, JSON for machines.
//!
//! A scenario's result implements [`ScenarioReport`]: it names itself,
//! lists its rows (a metric, its value, and for the metrics that have one,
//! the target and whether it was met), and says which targets it missed.
//! The same struct is serialized as the `--json` output, so the table and
//! the file never disagree.

use crate::BenchError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether a row's value met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The row has no target: it is information.
    Info,
    /// The target was met.
    Pass,
    /// The target was missed.
    Fail,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Info => "",
            Verdict::Pass => "ok",
            Verdict::Fail => "FAIL",
        }
    }
}

/// One line of a results table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// What was measured.
    pub metric: String,
    /// What was measured, formatted.
    pub value: String,
    /// What it should be; empty for information.
    pub target: String,
    /// Whether it is.
    pub verdict: Verdict,
}

impl Row {
    /// A row with no target.
    pub fn info(metric: impl Into<String>, value: impl Into<String>) -> Row {
        Row {
            metric: metric.into(),
            value: value.into(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    /// A row whose value is checked against `target`.
    pub fn checked(
        metric: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        met: bool,
    ) -> Row {
        Row {
            metric: metric.into(),
            value: value.into(),
            target: target.into(),
            verdict: if met { Verdict::Pass } else { Verdict::Fail },
        }
    }
}

/// What every scenario's report begins with, in its JSON as in its
/// struct (flattened into it): which scenario ran, against which binary,
/// with which options.
#[derive(Debug, Clone, Serialize)]
pub struct Run<O> {
    /// The scenario's name, as the command line spells it.
    pub scenario: &'static str,
    /// The binary measured.
    pub meridian: PathBuf,
    /// The options it ran with.
    pub options: O,
}

impl<O: Clone> Run<O> {
    /// `scenario` run against `meridian` with `options`.
    pub fn new(scenario: &'static str, meridian: &Path, options: &O) -> Run<O> {
        Run {
            scenario,
            meridian: meridian.to_path_buf(),
            options: options.clone(),
        }
    }
}

/// What every scenario's result provides.
pub trait ScenarioReport: Serialize {
    /// A one-line description of what ran, printed above the table.
    fn title(&self) -> String;
    /// The table's rows, in reading order.
    fn rows(&self) -> Vec<Row>;
    /// The targets missed, one sentence each; empty when the run passed.
    /// By default, the rows whose verdict is a failure.
    fn failures(&self) -> Vec<String> {
        let missed = self
            .rows()
            .into_iter()
            .filter(|r| r.verdict == Verdict::Fail);
        (missed.map(|r| format!("{}: {} (target {})", r.metric, r.value, r.target))).collect()
    }
    /// Lines printed after the table (e.g. error messages too long for a
    /// cell); none by default.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
}

/// `a: 1, b: 2`, in key order; `none` when there are none.
pub fn counts(counts: &BTreeMap<String, usize>) -> String {
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k}: {n}")).collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `12.5 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Renders `rows` as an aligned four-column table (metric, value, target,
/// verdict) under `title`.
pub fn render_table(title: &str, rows: &[Row]) -> String {
    let row = |r: &Row| [&*r.metric, &r.value, &r.target, r.verdict.label()].map(str::to_owned);
    let mut cells: Vec<[String; 4]> = rows.iter().map(row).collect();
    cells.insert(
        0,
        ["metric", "value", "target", "result"].map(str::to_owned),
    );
    // Widths in characters, as `format!` pads (`µs` is one, not two bytes).
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).max();
    let [w0, w1, w2] = [0, 1, 2].map(|i| width(i).unwrap_or(0));
    cells.insert(1, [w0, w1, w2, 6].map(|w| "-".repeat(w)));
    let mut out = format!("{title}\n\n");
    for [metric, value, target, verdict] in cells {
        let line = format!("  {metric:<w0$}  {value:<w1$}  {target:<w2$}  {verdict}");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Writes `report` to `path` as pretty-printed JSON.
pub fn write_json(path: &Path, report: &impl Serialize) -> Result<(), BenchError> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| BenchError::WriteJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Prints `report`'s table to stdout, writes it to `json` if given, and
/// returns its failures (empty when every target was met).
pub fn finish<R: ScenarioReport>(
    report: &R,
    json: Option<&Path>,
) -> Result<Vec<String>, BenchError> {
    print!("{}", render_table(&report.title(), &report.rows()));
    let notes = report.notes();
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("{note}");
        }
    }
    if let Some(path) = json {
        write_json(path, report)?;
        println!();
        println!("results written to {}", path.display());
    }
    Ok(report.failures())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_aligns_its_columns_in_characters_and_marks_verdicts() {
        let rows = [
            Row::info("requests sent", "1000"),
            Row::checked("origin fetches", "3", "exactly 1", false),
            Row::checked("responses", "200: 1000", "all 200", true),
            // 15 characters, 17 bytes: the widest value.
            Row::info("latency", "1.5 µs / 9.9 µs"),
        ];
        let table = render_table("coalesce", &rows);
        // Information rows carry no trailing blanks.
        let expected = [
            "coalesce",
            "",
            "  metric          value            target     result",
            "  --------------  ---------------  ---------  ------",
            "  requests sent   1000",
            "  origin fetches  3                exactly 1  FAIL",
            "  responses       200: 1000        all 200    ok",
            "  latency         1.5 µs / 9.9 µs",
        ];
        assert_eq!(table.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn json_is_written_to_the_named_file() {
        #[derive(Serialize)]
        struct Sample {
            fetches: u64,
        }
        let path = std::env::temp_dir().join(format!("bench-report-{}.json", std::process::id()));
        write_json(&path, &Sample { fetches: 1 }).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["fetches"], 1);
    }
}
