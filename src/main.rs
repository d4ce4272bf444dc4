//! `meridian`: one binary for every role of the CDN.
//!
//! It parses the command line and hands over: `up` runs the whole topology
//! on this machine (the `up` module), `geodns`/`edge`/`origin` run one role
//! as deployed on a real host (the `roles` module), `outage`/`restore`/
//! `status` talk to a running `up` (the `ops` module), and `config`
//! validates, publishes or prints configurations (`config_files`). The work itself lives in the library crates.

mod address;
mod cli;
mod cluster_status;
mod config_files;
mod dns_views;
mod member;
mod ops;
mod purge;
mod roles;
mod route;
mod up;

use clap::Parser;
use cli::{Cli, Command, ConfigCommand, UpArgs};
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// jemalloc: the edge allocates and frees many small buffers per request,
/// and measures several percent faster with it than with glibc's malloc;
/// it also returns freed cache memory to the OS more predictably.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Per-query and per-connection logs of the libraries stay below `info`:
/// a busy server must not spend its time writing logs.
const DEFAULT_LOG_FILTER: &str =
    "info,hickory_server=warn,pingora_core=warn,pingora_proxy=warn,async_nats=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let command = cli.command.unwrap_or(Command::Up(UpArgs::default()));
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Up(args) => up::run(&args),
        Command::Geodns(args) => roles::geodns(&args),
        Command::Edge(args) => roles::edge(&args),
        Command::Origin(args) => roles::origin(&args),
        Command::Outage(args) => ops::outage(&args),
        Command::Restore(args) => ops::restore(&args),
        Command::Status(args) => ops::status(&args),
        Command::Purge(args) => purge::purge(&args),
        Command::Config(ConfigCommand::Default) => {
            print!("{}", config::DEMO_TOML);
            Ok(())
        }
        Command::Config(ConfigCommand::Check { files }) => config_files::check(&files),
        Command::Config(ConfigCommand::Publish { file }) => config_files::publish(&file),
        Command::Route(args) => route::route(&args),
    }
}

fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
