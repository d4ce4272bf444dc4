//! `meridian-certs`: writes a development CA and edge certificate for a
//! topology (the embedded demo unless `--config` names another).

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// Generate development TLS material: a local CA, and an edge certificate
/// it signs for the topology's names and edge addresses.
#[derive(Debug, Parser)]
#[command(name = "meridian-certs", version, about)]
struct Args {
    /// The topology config; the embedded demo when absent.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Where to write ca.pem, ca-key.pem, edge.pem and edge-key.pem.
    #[arg(long, short, default_value = "certs/dev")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let config = config::Config::load_or_demo(args.config.as_deref())?;
        let spec = certs::DevCertSpec::from_config(&config);
        certs::write(&certs::generate(&spec)?, &args.out)?;
        println!(
            "wrote {}/{{ca,ca-key,edge,edge-key}}.pem",
            args.out.display()
        );
        println!("names: {}", spec.names.join(", "));
        let ips: Vec<String> = spec.ip_addresses.iter().map(ToString::to_string).collect();
        println!("addresses: {}", ips.join(", "));
        println!(
            "valid for {} days; trust {}/ca.pem only on development machines",
            spec.valid_days,
            args.out.display()
        );
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
