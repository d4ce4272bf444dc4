//! `bench`: Meridian's benchmark scenarios, run against the real binary.
//!
//! `cargo run --release -p bench -- <scenario> [options]`. This file only
//! parses the command line and calls the library; each scenario lives in
//! its own module of the `bench` library.

use bench::coalesce::{self, CoalesceOptions};
use bench::connections::{self, ConnectionsOptions};
use bench::disk::{self, DiskOptions};
use bench::dns::{self, DnsOptions};
use bench::dns_flood::{self, DnsFloodOptions};
use bench::drill::DrillOptions;
use bench::http::{self, HttpOptions};
use bench::memory::{self, MemoryOptions};
use bench::purge::PurgeOptions;
use bench::report;
use bench::{outage, partition, purge};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// Meridian's benchmark harness.
///
/// Each scenario starts the `meridian` binary, measures it, prints a table,
/// and exits non-zero if a target was missed.
#[derive(Debug, PartialEq, Parser)]
#[command(name = "bench", version, about, long_about)]
struct Cli {
    /// The scenario to run.
    #[command(subcommand)]
    scenario: Scenario,
    /// Also write the results as JSON to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The `meridian` binary to benchmark [default: `meridian` next to
    /// this executable, e.g. target/release/meridian].
    #[arg(long, global = true, value_name = "PATH")]
    meridian: Option<PathBuf>,
    /// A small, quick run for CI (options given explicitly still apply).
    #[arg(long, global = true)]
    smoke: bool,
    /// Run on loopback block 127.BLOCK.x.y [default: one per scenario,
    /// 240-247; 251 for disk].
    #[arg(long, global = true, value_name = "BLOCK")]
    block: Option<u8>,
}

/// Each scenario's flags are fields of its options, which start as its
/// preset ([`Scenario::preset`]) and take what the command line gives.
#[derive(Debug, PartialEq, Subcommand)]
enum Scenario {
    /// N concurrent requests for one cold object through one edge must
    /// cause exactly one origin fetch (request coalescing).
    Coalesce(CoalesceOptions),
    /// Cache hits per second, latency and CPU per request through one edge
    /// pinned to one core; with --compare, nginx and Varnish side by side.
    Http(HttpOptions),
    /// A Zipf load over a catalogue 4× the memory budget, from the disk
    /// tier; with --compare, nginx's proxy_cache on the same disk. Then the
    /// edge killed under load and restarted on its directory.
    Disk(DiskOptions),
    /// Steered DNS answers with ECS per server CPU-second; with --compare,
    /// gdnsd side by side.
    Dns(DnsOptions),
    /// GeoDNS flooded from one core with the fuzz corpus's hostile
    /// datagrams, while probes from known countries measure how many real
    /// queries still get their answer over UDP and TCP.
    DnsFlood(DnsFloodOptions),
    /// The regional-outage drill: kill eu-west, restore it, then kill only
    /// its origin, under load from clients in GB, US and SG; measures how
    /// fast GeoDNS steers away and back.
    Outage(DrillOptions),
    /// The partition drill on `up --hosts` (root): an eu-west edge killed,
    /// ns1 cut from eu-west, eu-west cut off, ns1 killed, one object filled
    /// through both eu-west edges; skipped, passing, without root.
    Partition(DrillOptions),
    /// Purges on the cluster bus: latency, a stopped edge's catch-up, rate.
    Purge(PurgeOptions),
    /// Prints the targets table (Markdown), as bench/RESULTS.md shows it.
    Targets,
    /// Resident memory of an edge whose cache was filled twice over,
    /// against its byte budget.
    Memory(MemoryOptions),
    /// Many idle keep-alive clients on one edge: all served, memory per
    /// connection bounded, new clients still served.
    Connections(ConnectionsOptions),
}

impl Scenario {
    /// The options of scenario `name` before its flags apply: the full
    /// run's, or `--smoke`'s.
    fn preset(name: &str, smoke: bool) -> Scenario {
        macro_rules! preset {
            ($options:ident) => {
                if smoke {
                    $options::smoke()
                } else {
                    $options::full()
                }
            };
        }
        match name {
            "coalesce" => Scenario::Coalesce(preset!(CoalesceOptions)),
            "http" => Scenario::Http(preset!(HttpOptions)),
            "disk" => Scenario::Disk(preset!(DiskOptions)),
            "dns" => Scenario::Dns(preset!(DnsOptions)),
            "dns-flood" => Scenario::DnsFlood(preset!(DnsFloodOptions)),
            "outage" => Scenario::Outage(preset!(DrillOptions)),
            "partition" => Scenario::Partition(partition::on_hosts(preset!(DrillOptions))),
            "memory" => Scenario::Memory(preset!(MemoryOptions)),
            "connections" => Scenario::Connections(preset!(ConnectionsOptions)),
            "purge" => Scenario::Purge(preset!(PurgeOptions)),
            _ => Scenario::Targets,
        }
    }
}

/// Parses `args`: `--smoke` chooses the presets, then every flag given
/// changes its field (clap updates only the fields whose flags it saw).
fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> Result<Cli, clap::Error> {
    let matches = Cli::command().try_get_matches_from(args)?;
    let smoke = matches.get_flag("smoke");
    let name = matches.subcommand_name().unwrap_or_default();
    let mut cli = Cli {
        scenario: Scenario::preset(name, smoke),
        json: None,
        meridian: None,
        smoke,
        block: None,
    };
    cli.update_from_arg_matches(&matches)?;
    Ok(cli)
}

fn main() -> ExitCode {
    let cli = parse(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match run(cli) {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!();
            for failure in failures {
                eprintln!("error: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the chosen scenario; returns the targets it missed.
fn run(cli: Cli) -> anyhow::Result<Vec<String>> {
    if let Scenario::Targets = cli.scenario {
        print!("{}", bench::targets::markdown());
        return Ok(Vec::new());
    }
    let meridian = bench::locate_meridian(cli.meridian.as_deref())?;
    // Everything of the bench's own (its runtime, its origin, its health
    // responders) stays off the core the servers under test are pinned
    // to: threads inherit this thread's affinity.
    bench::pinning::Cores::choose().pin_current_thread_to_load();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let json = cli.json.as_deref();
    let block = cli.block;
    // Each scenario: its options (the block given, if one was), run, report.
    macro_rules! scenario {
        ($module:ident, $options:expr, $($block:ident).+) => {{
            let mut options = $options;
            if let Some(block) = block {
                options.$($block).+ = block;
            }
            let result = runtime.block_on($module::run(&meridian, &options))?;
            report::finish(&result, json)?
        }};
    }
    let failures = match cli.scenario {
        Scenario::Coalesce(args) => scenario!(coalesce, args, launch.block),
        Scenario::Dns(args) => scenario!(dns, args, launch.block),
        Scenario::DnsFlood(args) => scenario!(dns_flood, args, block),
        Scenario::Outage(args) => scenario!(outage, args, block),
        Scenario::Partition(args) => scenario!(partition, args, block),
        Scenario::Connections(args) => scenario!(connections, args, launch.block),
        Scenario::Memory(args) => scenario!(memory, args, launch.block),
        Scenario::Http(args) => scenario!(http, args, launch.block),
        Scenario::Disk(args) => scenario!(disk, args, launch.block),
        Scenario::Purge(args) => scenario!(purge, args, block),
        Scenario::Targets => Vec::new(),
    };
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bench::loadgen::LoadChoice;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_change_the_full_or_smoke_preset() {
        let scenario = |args: &[&str]| parse([&["bench"], args].concat()).unwrap().scenario;
        let cases = [
            (
                &["coalesce", "--requests", "70", "--smoke"][..],
                Scenario::Coalesce(CoalesceOptions {
                    requests: 70,
                    ..CoalesceOptions::smoke()
                }),
            ),
            (
                &["coalesce", "--size", "1024", "--origin-delay-ms", "500"],
                Scenario::Coalesce(CoalesceOptions {
                    body_bytes: 1024,
                    origin_delay_ms: 500,
                    ..CoalesceOptions::full()
                }),
            ),
            (
                &[
                    "http",
                    "--compare",
                    "--sizes",
                    "1k,100k",
                    "--duration",
                    "2.5",
                ],
                Scenario::Http(HttpOptions {
                    sizes: vec![1024, 102_400],
                    duration_ms: 2500,
                    compare: true,
                    ..HttpOptions::full()
                }),
            ),
            (
                &["--smoke", "http", "--load", "builtin", "--connections", "3"],
                Scenario::Http(HttpOptions {
                    load: LoadChoice::Builtin,
                    connections: 3,
                    ..HttpOptions::smoke()
                }),
            ),
            (
                &["dns", "--compare", "--countries", "GB,US", "--rounds", "5"],
                Scenario::Dns(DnsOptions {
                    countries: vec!["GB".to_owned(), "US".to_owned()],
                    rounds: 5,
                    compare: true,
                    ..DnsOptions::full()
                }),
            ),
            (
                &[
                    "dns-flood",
                    "--duration",
                    "30",
                    "--sockets",
                    "16",
                    "--seed",
                    "7",
                ],
                Scenario::DnsFlood(DnsFloodOptions {
                    duration_ms: 30_000,
                    sockets: 16,
                    seed: Some(7),
                    ..DnsFloodOptions::full()
                }),
            ),
            (
                &[
                    "dns-flood",
                    "--smoke",
                    "--rate",
                    "500",
                    "--rate-limit",
                    "50",
                ],
                Scenario::DnsFlood(DnsFloodOptions {
                    rate: Some(500),
                    rate_limit: Some(50),
                    ..DnsFloodOptions::smoke()
                }),
            ),
            (
                &["outage", "--smoke", "--clients", "3", "--steered-ttl", "9"],
                Scenario::Outage(DrillOptions {
                    clients_per_country: 3,
                    steered_ttl_seconds: Some(9),
                    ..DrillOptions::smoke()
                }),
            ),
            (
                &["partition", "--phase-ms", "500", "--rate", "4"],
                Scenario::Partition(partition::on_hosts(DrillOptions {
                    phase_ms: 500,
                    rate_per_client: 4,
                    ..DrillOptions::full()
                })),
            ),
            (
                &["disk", "--smoke", "--compare", "--objects", "40"],
                Scenario::Disk(DiskOptions {
                    objects: 40,
                    compare: true,
                    ..DiskOptions::smoke()
                }),
            ),
            (
                &["memory", "--budget", "1m", "--sizes", "1k"],
                Scenario::Memory(MemoryOptions {
                    budget_bytes: 1 << 20,
                    sizes: vec![1024],
                    ..MemoryOptions::full()
                }),
            ),
            (
                &["--smoke", "connections", "--connections", "7"],
                Scenario::Connections(ConnectionsOptions {
                    connections: 7,
                    ..ConnectionsOptions::smoke()
                }),
            ),
        ];
        for (args, expected) in cases {
            assert_eq!(scenario(args), expected, "{args:?}");
        }
    }

    #[test]
    fn global_flags_and_bad_input() {
        let cli = parse(["bench", "--json", "out.json", "memory", "--block", "9"]).unwrap();
        assert_eq!(cli.json, Some(PathBuf::from("out.json")));
        assert_eq!(cli.block, Some(9));
        for bad in [
            &["bench"][..],
            &["bench", "nope"],
            &["bench", "http", "--sizes", "huge"],
            &["bench", "dns", "--duration", "soon"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
