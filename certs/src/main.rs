//! `meridian-certs`: writes a development CA and an edge certificate it
//! signs for a topology (the embedded demo unless `--config` names
//! another). The work is the library's; this parses arguments and reports.

use anyhow::Context as _;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Generate development TLS material: a local CA, and an edge certificate
/// it signs for the topology's names and edge addresses. For development
/// only: trust the CA nowhere else.
#[derive(Debug, Parser)]
#[command(name = "meridian-certs", version, about)]
struct Args {
    /// The topology config; the embedded demo when absent.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where to write ca.pem, ca-key.pem, edge.pem and edge-key.pem
    /// (created if needed; files of those names are replaced).
    #[arg(long, short, value_name = "DIR", default_value = "certs/dev")]
    out: PathBuf,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let config = config::Config::load_or_demo(args.config.as_deref())?;
    let spec = certs::DevCertSpec::from_config(&config);
    let generated =
        certs::generate(&spec).with_context(|| format!("for the topology in {}", config.source))?;
    certs::write(&generated, &args.out)?;

    for (file, what) in [
        (
            "ca.pem",
            "the development CA: trust it on this machine only",
        ),
        ("ca-key.pem", "its private key"),
        ("edge.pem", "the edge certificate, then the CA"),
        ("edge-key.pem", "its private key"),
    ] {
        println!("wrote {}  ({what})", args.out.join(file).display());
    }
    println!("DNS names: {}", spec.names.join(", "));
    let addresses: Vec<String> = spec.ip_addresses.iter().map(ToString::to_string).collect();
    println!("IP addresses: {}", addresses.join(", "));
    println!(
        "the edge certificate is valid for {} days, the CA for ten years",
        spec.valid_days
    );
    Ok(())
}
