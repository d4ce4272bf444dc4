//! `bench`: Meridian's benchmark scenarios, run against the real binary.
//!
//! `cargo run --release -p bench -- <scenario> [options]`. This file only
//! parses the command line and calls the library; each scenario lives in
//! its own module of the `bench` library.

use bench::coalesce::{self, CoalesceOptions};
use bench::connections::{self, ConnectionsOptions};
use bench::dns::{self, DnsOptions};
use bench::dns_flood::{self, DnsFloodOptions};
use bench::drill::DrillOptions;
use bench::http::{self, HttpOptions};
use bench::loadgen::LoadChoice;
use bench::memory::{self, MemoryOptions};
use bench::report;
use bench::{outage, partition};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Meridian's benchmark harness.
///
/// Each scenario starts the `meridian` binary, measures it, prints a table,
/// and exits non-zero if a target was missed.
#[derive(Debug, Parser)]
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
    /// 240-246].
    #[arg(long, global = true, value_name = "BLOCK")]
    block: Option<u8>,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// N concurrent requests for one cold object through one edge must
    /// cause exactly one origin fetch (request coalescing).
    Coalesce(CoalesceArgs),
    /// Cache hits per second, latency and CPU per request through one edge
    /// pinned to one core; with --compare, nginx and Varnish side by side.
    Http(HttpArgs),
    /// Steered DNS answers with ECS per server CPU-second; with --compare,
    /// gdnsd side by side.
    Dns(DnsArgs),
    /// GeoDNS flooded from one core with the fuzz corpus's hostile
    /// datagrams, while probes from known countries measure how many real
    /// queries still get their answer over UDP and TCP.
    DnsFlood(DnsFloodArgs),
    /// The regional-outage drill: kill eu-west, restore it, then kill only
    /// its origin, under load from clients in GB, US and SG; measures how
    /// fast GeoDNS steers away and back.
    Outage(OutageArgs),
    /// The partition drill on `up --hosts` (root): an eu-west edge killed,
    /// ns1 cut from eu-west, eu-west cut off, ns1 killed, one object filled
    /// through both eu-west edges; skipped, passing, without root.
    Partition(PartitionArgs),
    /// Prints the targets table (Markdown), as bench/RESULTS.md shows it.
    Targets,
    /// Resident memory of an edge whose cache was filled twice over,
    /// against its byte budget.
    Memory(MemoryArgs),
    /// Many idle keep-alive clients on one edge: all served, memory per
    /// connection bounded, new clients still served.
    Connections(ConnectionsArgs),
}

/// `bench connections`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct ConnectionsArgs {
    /// Connections to hold [default: 10000; 500 with --smoke].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
}

impl ConnectionsArgs {
    fn options(&self, smoke: bool) -> ConnectionsOptions {
        let defaults = if smoke {
            ConnectionsOptions::smoke()
        } else {
            ConnectionsOptions::full()
        };
        ConnectionsOptions {
            connections: self.connections.unwrap_or(defaults.connections),
            ..defaults
        }
    }
}

/// `bench memory`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct MemoryArgs {
    /// The cache budget in bytes (1k, 64m, ...) [default: 64m; 4m with
    /// --smoke].
    #[arg(long, value_parser = http::parse_size, value_name = "BYTES")]
    budget: Option<usize>,
    /// Object sizes, comma-separated; one run each [default: 1k,100k].
    #[arg(long, value_delimiter = ',', value_parser = http::parse_size, value_name = "SIZES")]
    sizes: Vec<usize>,
}

impl MemoryArgs {
    fn options(&self, smoke: bool) -> MemoryOptions {
        let defaults = if smoke {
            MemoryOptions::smoke()
        } else {
            MemoryOptions::full()
        };
        MemoryOptions {
            budget_bytes: self.budget.map_or(defaults.budget_bytes, |b| b as u64),
            sizes: if self.sizes.is_empty() {
                defaults.sizes.clone()
            } else {
                self.sizes.clone()
            },
            ..defaults
        }
    }
}

/// `bench outage`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct OutageArgs {
    /// How long each phase runs at least [default: 10000; 3000 with
    /// --smoke].
    #[arg(long, value_name = "MS")]
    phase_ms: Option<u64>,
    /// How long the baseline runs [default: 5000; 2000 with --smoke].
    #[arg(long, value_name = "MS")]
    baseline_ms: Option<u64>,
    /// Simulated clients per country [default: 2; 1 with --smoke].
    #[arg(long, value_name = "N")]
    clients: Option<usize>,
    /// Requests per second of each client [default: 20].
    #[arg(long, value_name = "N")]
    rate: Option<u32>,
    /// TTL of steered answers in seconds [default: the demo's 30; 5 with
    /// --smoke].
    #[arg(long, value_name = "SECONDS")]
    steered_ttl: Option<u32>,
}

impl OutageArgs {
    fn options(&self, smoke: bool) -> DrillOptions {
        let defaults = if smoke {
            DrillOptions::smoke()
        } else {
            DrillOptions::full()
        };
        DrillOptions {
            phase_ms: self.phase_ms.unwrap_or(defaults.phase_ms),
            baseline_ms: self.baseline_ms.unwrap_or(defaults.baseline_ms),
            clients_per_country: self.clients.unwrap_or(defaults.clients_per_country),
            rate_per_client: self.rate.unwrap_or(defaults.rate_per_client),
            steered_ttl_seconds: self.steered_ttl.or(defaults.steered_ttl_seconds),
            ..defaults
        }
    }
}

/// `bench partition`: the outage drill's options, on hosts.
#[derive(Debug, Args)]
struct PartitionArgs {
    #[command(flatten)]
    drill: OutageArgs,
}

impl PartitionArgs {
    fn options(&self, smoke: bool) -> DrillOptions {
        partition::on_hosts(self.drill.options(smoke))
    }
}

/// `bench dns`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct DnsArgs {
    /// Also run gdnsd 3 (plugin_geoip) with the same zone, database and
    /// steering, on the same core, and print the ratio.
    #[arg(long)]
    compare: bool,
    /// Countries whose clients are simulated, comma-separated ISO codes
    /// [default: GB,US,DE,FR,JP,SG,AU,BR,IN,ZA].
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    countries: Vec<String>,
    /// Seconds of load per server and round [default: 5; 1 with --smoke].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Rounds; the report gives medians [default: 3; 1 with --smoke].
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Queries in flight per client socket [default: 64; 16 with --smoke].
    #[arg(long, value_name = "N")]
    outstanding: Option<usize>,
}

impl DnsArgs {
    fn options(&self, smoke: bool) -> DnsOptions {
        let defaults = if smoke {
            DnsOptions::smoke()
        } else {
            DnsOptions::full()
        };
        DnsOptions {
            countries: if self.countries.is_empty() {
                defaults.countries.clone()
            } else {
                self.countries.clone()
            },
            duration_ms: self.duration.map_or(defaults.duration_ms, seconds_to_ms),
            rounds: self.rounds.unwrap_or(defaults.rounds),
            outstanding: self.outstanding.unwrap_or(defaults.outstanding),
            compare: self.compare,
            ..defaults
        }
    }
}

/// `bench dns-flood`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct DnsFloodArgs {
    /// Seconds of flood [default: 10; 2 with --smoke].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Flood sockets, each on its own source address, 1-64 [default: 8;
    /// 4 with --smoke].
    #[arg(long, value_name = "N")]
    sockets: Option<usize>,
    /// Flood datagrams per second at most [default: as many as the load
    /// core can send; 20000 with --smoke].
    #[arg(long, value_name = "N")]
    rate: Option<u64>,
    /// Countries the probes ask for, comma-separated ISO codes [default:
    /// GB,US,SG].
    #[arg(long, value_delimiter = ',', value_name = "CODES")]
    countries: Vec<String>,
    /// The seed of the flood's datagrams, to replay a run [default: from
    /// the clock; printed].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Run GeoDNS with response-rate limiting ([geodns.rate_limit]) at
    /// this many responses per second per client network; the flood comes
    /// from one /24 and the probes from another [default: off].
    #[arg(long, value_name = "RPS")]
    rate_limit: Option<u32>,
}

impl DnsFloodArgs {
    fn options(&self, smoke: bool) -> DnsFloodOptions {
        let defaults = if smoke {
            DnsFloodOptions::smoke()
        } else {
            DnsFloodOptions::full()
        };
        DnsFloodOptions {
            duration_ms: self.duration.map_or(defaults.duration_ms, seconds_to_ms),
            sockets: self.sockets.unwrap_or(defaults.sockets),
            rate: self.rate.or(defaults.rate),
            countries: if self.countries.is_empty() {
                defaults.countries.clone()
            } else {
                self.countries.clone()
            },
            seed: self.seed.or(defaults.seed),
            rate_limit: self.rate_limit.or(defaults.rate_limit),
            ..defaults
        }
    }
}

/// Seconds from the command line to milliseconds (negative: 0).
fn seconds_to_ms(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0) as u64
}

/// `bench http`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct HttpArgs {
    /// Also run nginx (proxy_cache) and Varnish (-s malloc), tuned, on the
    /// same core in front of the same origin, and print the ratios.
    #[arg(long)]
    compare: bool,
    /// Object sizes, comma-separated (1k, 100k, 1m or bytes) [default:
    /// 1k,100k,1m].
    #[arg(long, value_delimiter = ',', value_parser = http::parse_size, value_name = "SIZES")]
    sizes: Vec<usize>,
    /// Seconds of load per server, size and round [default: 5; 1 with
    /// --smoke].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Rounds; the servers take turns and the report gives medians
    /// [default: 3; 1 with --smoke].
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
    /// Concurrent keep-alive connections [default: 32; 8 with --smoke].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,
    /// The load generator: wrk when installed (auto), or the built-in one.
    #[arg(long, value_enum, default_value_t = LoadChoice::Auto)]
    load: LoadChoice,
}

impl HttpArgs {
    fn options(&self, smoke: bool) -> HttpOptions {
        let defaults = if smoke {
            HttpOptions::smoke()
        } else {
            HttpOptions::full()
        };
        HttpOptions {
            sizes: if self.sizes.is_empty() {
                defaults.sizes.clone()
            } else {
                self.sizes.clone()
            },
            duration_ms: self.duration.map_or(defaults.duration_ms, seconds_to_ms),
            rounds: self.rounds.unwrap_or(defaults.rounds),
            connections: self.connections.unwrap_or(defaults.connections),
            compare: self.compare,
            load: self.load,
            ..defaults
        }
    }
}

/// `bench coalesce`; unset options take the full (or --smoke) defaults.
#[derive(Debug, Args)]
struct CoalesceArgs {
    /// Concurrent requests [default: 1000; 50 with --smoke].
    #[arg(long, value_name = "N")]
    requests: Option<usize>,
    /// The object's size in bytes [default: 102400].
    #[arg(long, value_name = "BYTES")]
    size: Option<usize>,
    /// How long the origin waits before answering [default: 200; 100 with
    /// --smoke].
    #[arg(long, value_name = "MS")]
    origin_delay_ms: Option<u64>,
}

impl CoalesceArgs {
    fn options(&self, smoke: bool) -> CoalesceOptions {
        let defaults = if smoke {
            CoalesceOptions::smoke()
        } else {
            CoalesceOptions::full()
        };
        CoalesceOptions {
            requests: self.requests.unwrap_or(defaults.requests),
            body_bytes: self.size.unwrap_or(defaults.body_bytes),
            origin_delay_ms: self.origin_delay_ms.unwrap_or(defaults.origin_delay_ms),
            ..defaults
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let (smoke, block) = (cli.smoke, cli.block);
    // Each scenario: its options (the block given, if one was), run, report.
    macro_rules! scenario {
        ($module:ident, $args:expr) => {{
            let mut options = $args.options(smoke);
            if let Some(block) = block {
                options.block = block;
            }
            let result = runtime.block_on($module::run(&meridian, &options))?;
            report::finish(&result, json)?
        }};
    }
    let failures = match cli.scenario {
        Scenario::Coalesce(args) => scenario!(coalesce, args),
        Scenario::Dns(args) => scenario!(dns, args),
        Scenario::DnsFlood(args) => scenario!(dns_flood, args),
        Scenario::Outage(args) => scenario!(outage, args),
        Scenario::Partition(args) => scenario!(partition, args),
        Scenario::Connections(args) => scenario!(connections, args),
        Scenario::Memory(args) => scenario!(memory, args),
        Scenario::Http(args) => scenario!(http, args),
        Scenario::Targets => Vec::new(),
    };
    Ok(failures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn smoke_sets_defaults_that_explicit_options_override() {
        let cli =
            Cli::try_parse_from(["bench", "coalesce", "--smoke", "--requests", "70"]).unwrap();
        let Scenario::Coalesce(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        let options = args.options(cli.smoke);
        assert_eq!(options.requests, 70);
        assert_eq!(options.origin_delay_ms, 100);
        assert!(options.smoke);

        let cli = Cli::try_parse_from([
            "bench",
            "--json",
            "out.json",
            "coalesce",
            "--size",
            "1024",
            "--origin-delay-ms",
            "500",
        ])
        .unwrap();
        let Scenario::Coalesce(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        let options = args.options(cli.smoke);
        assert_eq!(
            options,
            CoalesceOptions {
                body_bytes: 1024,
                origin_delay_ms: 500,
                ..CoalesceOptions::full()
            }
        );
        assert_eq!(cli.json, Some(PathBuf::from("out.json")));
    }

    #[test]
    fn http_sizes_and_durations_parse() {
        let cli = Cli::try_parse_from([
            "bench",
            "http",
            "--compare",
            "--sizes",
            "1k,100k",
            "--duration",
            "2.5",
            "--load",
            "builtin",
        ])
        .unwrap();
        let Scenario::Http(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        let options = args.options(cli.smoke);
        assert_eq!(options.sizes, [1024, 102_400]);
        assert_eq!(options.duration_ms, 2500);
        assert_eq!(options.connections, 32);
        assert!(options.compare);
        assert_eq!(options.load, LoadChoice::Builtin);

        let cli = Cli::try_parse_from(["bench", "--smoke", "http"]).unwrap();
        let Scenario::Http(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        assert_eq!(args.options(cli.smoke), HttpOptions::smoke());
        assert!(Cli::try_parse_from(["bench", "http", "--sizes", "huge"]).is_err());
    }

    #[test]
    fn dns_options_parse() {
        let cli = Cli::try_parse_from([
            "bench",
            "dns",
            "--compare",
            "--countries",
            "GB,US",
            "--rounds",
            "5",
        ])
        .unwrap();
        let Scenario::Dns(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        let options = args.options(cli.smoke);
        assert_eq!(options.countries, ["GB", "US"]);
        assert_eq!(options.rounds, 5);
        assert!(options.compare);
        assert_eq!(options.duration_ms, DnsOptions::full().duration_ms);
    }

    #[test]
    fn dns_flood_options_parse() {
        let cli = Cli::try_parse_from([
            "bench",
            "dns-flood",
            "--duration",
            "30",
            "--sockets",
            "16",
            "--seed",
            "7",
        ])
        .unwrap();
        let Scenario::DnsFlood(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        let options = args.options(cli.smoke);
        assert_eq!(options.duration_ms, 30_000);
        assert_eq!(options.sockets, 16);
        assert_eq!(options.seed, Some(7));
        assert_eq!(options.rate, None);
        assert_eq!(options.rate_limit, None);
        assert_eq!(options.countries, ["GB", "US", "SG"]);

        let cli = Cli::try_parse_from([
            "bench",
            "dns-flood",
            "--smoke",
            "--rate",
            "500",
            "--rate-limit",
            "50",
        ])
        .unwrap();
        let Scenario::DnsFlood(args) = &cli.scenario else {
            panic!("{cli:?}")
        };
        let options = args.options(cli.smoke);
        assert_eq!(options.rate, Some(500));
        assert_eq!(options.rate_limit, Some(50));
        assert_eq!(options.duration_ms, 2_000);
        assert!(options.smoke);
    }

    #[test]
    fn a_scenario_is_required() {
        assert!(Cli::try_parse_from(["bench"]).is_err());
        assert!(Cli::try_parse_from(["bench", "nope"]).is_err());
    }
}
