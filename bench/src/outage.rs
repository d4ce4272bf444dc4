//! Scenario `outage`: how fast GeoDNS steers around a dead region.
//!
//! The product promises that when a region dies, GeoDNS steers its clients
//! elsewhere within 2 s and back within 3 s of the region's recovery. This
//! scenario measures those times on the real topology (`meridian up` on a
//! loopback block of its own, `--block`), under load from GB, US and SG
//! ([`crate::drill`]), through the phases: a baseline; `meridian outage
//! eu-west`; `meridian restore eu-west`; `meridian outage eu-west
//! --component origin`; `meridian restore eu-west`.
//!
//! The times are held against the targets ([`crate::targets`]); the
//! requests that failed are reported for each phase, as information. That
//! no idempotent request fails while only an origin is down, and that
//! steering happens at all, are correctness, checked on every test run by
//! `failover::an_origin_outage_behind_a_live_edge_fails_no_request` and
//! `up::an_outage_steers_away_and_a_restore_steers_back` in `tests/`.
//!
//! The pure part, [`summarize`], turns the samples into the report.

use crate::BenchError;
use crate::drill::{self, Action, DrillOptions, DrillReport, Measure, Measured, OUTAGE_REGION};
use crate::drill::{Answer, GB, Step, region_of};
use crate::report::{Run, counts};
use std::collections::BTreeMap;
use std::path::Path;

/// The phases, in order.
pub const PHASES: [&str; 5] = [
    "baseline",
    "region outage",
    "region restored",
    "origin-only outage",
    "origin restored",
];

/// Runs the drill against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &DrillOptions) -> Result<DrillReport, BenchError> {
    let steps: Vec<Step> = vec![
        Step::new(PHASES[0], Action::Nothing),
        Step::new(PHASES[1], Action::Meridian(&["outage", OUTAGE_REGION])).until(drill::gb_away),
        Step::new(PHASES[2], Action::Meridian(&["restore", OUTAGE_REGION])).until(drill::all_home),
        Step::new(
            PHASES[3],
            Action::Meridian(&["outage", OUTAGE_REGION, "--component", "origin"]),
        ),
        Step::new(PHASES[4], Action::Meridian(&["restore", OUTAGE_REGION]))
            .until(drill::own_origin),
    ];
    let (meridian, up) = drill::start(meridian, options)?;
    let measured = drill::drive(&up, options, steps).await;
    if measured.is_err() {
        up.process.replay();
    }
    Ok(summarize(&meridian, options, &measured?))
}

/// Whether an answer sends GB home (`home`) or elsewhere.
pub fn answers_home(home: bool) -> impl Fn(&Answer) -> bool {
    move |a| region_of(a).is_some_and(|r| (r == OUTAGE_REGION) == home)
}

/// Turns what was measured into the report (pure).
pub fn summarize(meridian: &Path, options: &DrillOptions, measured: &Measured) -> DrillReport {
    let outage = measured.span(PHASES[1]);
    let restore = measured.span(PHASES[2]);
    let origin_outage = measured.span(PHASES[3]);
    let away = outage.and_then(|(kill, _, end)| {
        Some(measured.all_answered((kill, end), answers_home(false))? - kill)
    });
    // Recovery: when eu-west's edge first answered again after the restore
    // began (when the restore returned, if the watcher never saw it).
    let recovered = restore.map(|(began, returned, _)| {
        let up = measured.edge_up.iter().find(|s| s.at >= began && s.value);
        up.map_or(returned, |s| s.at)
    });
    let back = recovered.filter(|_| away.is_some()).and_then(|r| {
        let until = origin_outage.map_or(measured.end, |span| span.0);
        Some(
            measured
                .all_answered((r, until), answers_home(true))?
                .saturating_sub(r),
        )
    });
    let clients_home = recovered.and_then(|recovered| {
        let gb_clients_home = measured.requests.iter().find(|r| {
            r.country == GB
                && r.at >= recovered
                && r.outcome.is_ok()
                && r.edge.as_deref() == Some(OUTAGE_REGION)
        });
        gb_clients_home.map(|r| r.at.saturating_sub(recovered))
    });
    let mut failed_over_to = BTreeMap::new();
    for request in &measured.requests {
        if let (Some((from, _, until)), Ok(origin)) = (origin_outage, &request.outcome)
            && request.at >= from
            && request.at < until
            && request.country == GB
            && request.edge.as_deref() == Some(OUTAGE_REGION)
            && origin != OUTAGE_REGION
            && origin != "(cache)"
        {
            *failed_over_to.entry(origin.clone()).or_default() += 1;
        }
    }
    let failed_over = Measure {
        shown: counts(&failed_over_to),
        ..Measure::count("failed_over_to", None).info("GB failed over to, origin down")
    };
    let home = Measure::time("clients_home", clients_home);
    let measures = vec![
        Measure::time("steer_away", away),
        Measure::time("steer_back", back),
        home.info("every GB client back, after the recovery"),
        failed_over,
    ];
    let title = format!(
        "{OUTAGE_REGION} killed, restored, then only its origin killed, under load from GB, \
         US and SG on 127.{}.x.y",
        options.block
    );
    DrillReport::new(
        Run::new("outage", meridian, options),
        &title,
        options.smoke,
        measured,
        measures,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drill::{RequestRecord, Sample};
    use std::time::Duration;

    fn s(secs: f64) -> Duration {
        Duration::from_secs_f64(secs)
    }

    fn answer(at: f64, region: &str) -> Sample<Answer> {
        let edge = ([127, 0, 0, 1].into(), region.to_owned());
        Sample {
            at: s(at),
            value: (0, Ok(vec![edge])),
        }
    }

    fn request(at: f64, edge: &str, origin: &str) -> RequestRecord {
        RequestRecord {
            at: s(at),
            country: GB,
            edge: Some(edge.to_owned()),
            outcome: Ok(origin.to_owned()),
            latency: Duration::from_millis(2),
        }
    }

    /// A run whose phases start 10 s apart and end at 45 s, the restore
    /// returning after 1 s, with nothing recorded.
    fn ten_second_phases() -> Measured {
        let starts = [0.0, 10.0, 20.0, 30.0, 40.0];
        Measured {
            phases: (PHASES.iter().zip(starts))
                .map(|(&p, at)| (p, s(at), s(at + 1.0)))
                .collect(),
            end: s(45.0),
            servers: 1,
            ..Measured::default()
        }
    }

    #[test]
    fn steering_is_timed_from_the_kill_and_from_the_recovery() {
        let measured = Measured {
            requests: vec![
                request(1.0, "eu-west", "eu-west"),
                RequestRecord {
                    outcome: Err("connect".to_owned()),
                    ..request(10.2, "eu-west", "")
                },
                request(25.0, "eu-west", "eu-west"),
                request(31.0, "eu-west", "us-east"),
            ],
            gb_answers: vec![
                answer(5.0, "eu-west"),
                answer(10.9, "us-east"),
                answer(20.5, "us-east"),
                answer(21.3, "eu-west"),
            ],
            edge_up: [(10.1, false), (20.5, true)]
                .map(|(at, value)| Sample { at: s(at), value })
                .to_vec(),
            ..ten_second_phases()
        };
        let report = summarize(Path::new("meridian"), &DrillOptions::smoke(), &measured);
        let near = |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < 0.001);
        assert!(near(report.value("steer_away"), 0.9), "{report:?}");
        assert!(near(report.value("steer_back"), 0.8), "{report:?}");
        assert!(near(report.value("clients_home"), 4.5), "{report:?}");
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        assert_eq!(report.phases[1].failed["connect"], 1);
        assert_eq!(report.measures[3].shown, "us-east: 1");
    }

    #[test]
    fn a_slow_or_missing_steer_misses_its_target() {
        let measured = Measured {
            gb_answers: vec![answer(13.0, "us-east")],
            ..ten_second_phases()
        };
        let report = summarize(Path::new("meridian"), &DrillOptions::smoke(), &measured);
        let [slow, missing] = report.failures.as_slice() else {
            panic!("{:?}", report.failures)
        };
        assert!(
            slow.contains("3.00 s") && missing.contains("not seen"),
            "{slow}; {missing}"
        );
    }
}
