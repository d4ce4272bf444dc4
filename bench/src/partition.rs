//! Scenario `partition`: the drill of issue 15 on `meridian up --hosts`,
//! every GeoDNS server, edge and origin on a network host of its own, under
//! load from GB, US and SG ([`crate::drill`]). Its phases:
//!
//! 1. one eu-west edge killed (SIGKILL; `up` restarts it after 0.5 s): GB's
//!    clients keep being served by the other (no failed request), and the
//!    dead edge is in no nameserver's answer for longer than 2 s;
//! 2. ns1 cut from eu-west only, then healed: nobody is steered away;
//! 3. eu-west cut from everyone: both nameservers send GB to us-east within
//!    3 s; healed: back within 3 s of `meridian restore`;
//! 4. ns1 killed: every query is still answered, by ns2;
//! 5. with the load stopped, one new object asked for through both eu-west
//!    edges at once: one origin fetch, counted as the difference in the
//!    edges' `meridian_edge_origin_response_seconds_count` (their only
//!    origin traffic then).
//!
//! Without root or iproute2 it says so and passes: it cannot run there.

use crate::BenchError;
use crate::drill::{self, Action, DrillOptions, DrillReport, Measure, Measured, OUTAGE_REGION};
use crate::drill::{Step, region_of};
use crate::outage::answers_home;
use crate::report::Run;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// The phases, in order.
pub const PHASES: [&str; 7] = [
    "baseline",
    "one eu-west edge killed",
    "ns1 cut from eu-west",
    "ns1's link healed",
    "eu-west partitioned",
    "partition healed",
    "ns1 killed",
];

/// How many requests fill the new object, spread over both eu-west edges.
const FILL_REQUESTS: usize = 16;

/// `options` moved onto hosts: config block 26, addresses in 198.20/16.
pub fn on_hosts(options: DrillOptions) -> DrillOptions {
    DrillOptions {
        block: 26,
        hosts_subnet: Some([198, 20]),
        ..options
    }
}

/// Whether this machine lets the drill make network namespaces.
fn namespaces_available() -> bool {
    let ip = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output();
    nix::unistd::geteuid().is_root() && ip.is_ok_and(|o| o.status.success())
}

/// Runs the drill against the `meridian` binary at `meridian`.
pub async fn run(meridian: &Path, options: &DrillOptions) -> Result<DrillReport, BenchError> {
    let run = Run::new("partition", meridian, options);
    if !namespaces_available() {
        let why = "skipped: `up --hosts` needs root on Linux and iproute2's `ip`";
        let nothing = Measured::default();
        return Ok(DrillReport::new(run, why, options.smoke, &nothing, vec![]));
    }
    let (meridian, up) = drill::start(meridian, options)?;
    let dead = options.host(up.topology.edge(2)).ip();
    let steps: Vec<Step> = vec![
        Step::new(PHASES[0], Action::Nothing),
        Step::new(
            PHASES[1],
            Action::Kill(format!("edge {OUTAGE_REGION} {dead}")),
        ),
        Step::new(
            PHASES[2],
            Action::Meridian(&["outage", OUTAGE_REGION, "--partition", "--from", "ns1"]),
        ),
        Step::new(PHASES[3], Action::Meridian(&["restore", OUTAGE_REGION])).until(drill::gb_home),
        Step::new(
            PHASES[4],
            Action::Meridian(&["outage", OUTAGE_REGION, "--partition"]),
        )
        .until(drill::gb_away),
        Step::new(PHASES[5], Action::Meridian(&["restore", OUTAGE_REGION])).until(drill::gb_home),
        Step::new(PHASES[6], Action::Kill("geodns ns1".to_owned())),
    ];
    let measured = drill::drive(&up, options, steps).await;
    let fill = match &measured {
        Ok(_) => {
            fill(
                &up.topology
                    .edges(2)
                    .iter()
                    .map(|&e| options.host(e))
                    .collect::<Vec<_>>(),
                options,
            )
            .await
        }
        Err(_) => None,
    };
    if measured.is_err() || fill.is_none() {
        up.process.replay();
    }
    let run = Run::new("partition", &meridian, options);
    Ok(summarize(run, &measured?, fill, dead))
}

/// Asks for one new object through `edges` at once: the origin fetches
/// the edges made meanwhile, or `None` when a request or a metric failed.
async fn fill(edges: &[SocketAddr], options: &DrillOptions) -> Option<usize> {
    let topology = kit::Topology::demo(options.block);
    let admins: Vec<SocketAddr> = (topology.edge_admins(2).iter())
        .map(|&a| options.host(a))
        .collect();
    let before = origin_fetches(&admins).await?;
    let path = format!("/assets/1k.bin?drill={}", crate::process::random_token());
    let ask = |i: usize| {
        let (edge, path) = (edges[i % edges.len()], path.clone());
        tokio::spawn(async move { drill::get(edge, &path).await })
    };
    let requests: Vec<_> = (0..FILL_REQUESTS).map(ask).collect();
    for request in requests {
        let (status, _) = request.await.ok()?.ok()?;
        (status == 200).then_some(())?;
    }
    origin_fetches(&admins).await?.checked_sub(before)
}

/// The origin fetches the edges whose admin listeners are `admins` have
/// made, from their `/metrics`.
async fn origin_fetches(admins: &[SocketAddr]) -> Option<usize> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let mut total = 0;
    for admin in admins {
        let text = client
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix("meridian_edge_origin_response_seconds_count "));
        total += count?.trim().parse::<usize>().ok()?;
    }
    Some(total)
}

/// Turns what was measured into the report (pure).
pub fn summarize(
    run: Run<DrillOptions>,
    measured: &Measured,
    fill: Option<usize>,
    dead: std::net::IpAddr,
) -> DrillReport {
    let span = |phase: usize| measured.span(PHASES[phase]);
    let in_span = |(from, _, until): (Duration, Duration, Duration)| {
        move |at: Duration| at >= from && at < until
    };
    let elapsed = |from: Duration, at: Option<Duration>| at.map(|at| at.saturating_sub(from));
    // The dead edge is listed until no nameserver answers it, or until it
    // answers again (restarted), whichever comes first.
    let listed = span(1).and_then(|(kill, _, end)| {
        let gone = measured.all_answered((kill, end), |a| {
            a.1.as_ref()
                .is_ok_and(|e| e.iter().all(|(ip, _)| *ip != dead))
        });
        let down = measured.edge_up.iter().find(|s| s.at >= kill && !s.value);
        let back = down.and_then(|d| measured.edge_up.iter().find(|s| s.at > d.at && s.value));
        let back = back.map(|s| s.at);
        elapsed(kill, gone.into_iter().chain(back).min())
    });
    let phases = drill::phase_reports(measured);
    let phase = |i: usize| phases.iter().find(|p| p.phase == PHASES[i]);
    let steered = span(2).map(|span| {
        let answers = measured.gb_answers.iter().filter(|s| in_span(span)(s.at));
        let away = answers
            .filter(|s| region_of(&s.value).is_some_and(|r| r != OUTAGE_REGION))
            .count();
        let served = phase(2).map_or(0, |p| {
            p.gb_edges
                .iter()
                .filter(|(r, _)| *r != OUTAGE_REGION)
                .map(|(_, n)| n)
                .sum::<usize>()
        });
        away + served
    });
    let to_us = |a: &drill::Answer| region_of(a) == Some("us-east");
    let away =
        span(4).and_then(|(cut, _, end)| elapsed(cut, measured.all_answered((cut, end), to_us)));
    let back = span(5).and_then(|(_, healed, end)| {
        elapsed(
            healed,
            measured.all_answered((healed, end), answers_home(true)),
        )
    });
    let unanswered = |server: usize| {
        span(6).map(|span| {
            let answers = measured
                .gb_answers
                .iter()
                .filter(|s| in_span(span)(s.at) && s.value.0 == server);
            let lookups = measured.requests.iter().filter(|r| {
                in_span(span)(r.at) && r.outcome.as_ref().is_err_and(|e| e.starts_with("dns"))
            });
            answers.filter(|s| s.value.1.is_err()).count()
                + if server == 0 { 0 } else { lookups.count() }
        })
    };
    let ns1_unanswered = Measure::count("ns1_unanswered", unanswered(0));
    let measures = vec![
        Measure::time("dead_edge_listed", listed),
        Measure::count("edge_kill_failed", phase(1).map(|p| p.gb_failed)),
        Measure::count("nameserver_cut_steered", steered),
        Measure::time("steer_away", away),
        Measure::time("steer_back", back),
        ns1_unanswered.info("ns1's own answers missed, while it was dead"),
        Measure::count("unanswered", unanswered(1)),
        Measure::count("origin_fetches", fill),
    ];
    let subnet = run
        .options
        .hosts_subnet
        .map_or("loopback".to_owned(), |[a, b]| format!("{a}.{b}.0.0/16"));
    let title = format!(
        "an eu-west edge killed, ns1 cut from eu-west, eu-west partitioned, ns1 killed, under load from GB, US and SG on up --hosts ({subnet})"
    );
    let smoke = run.options.smoke;
    DrillReport::new(run, &title, smoke, measured, measures)
}
