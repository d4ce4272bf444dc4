//! `meridian config check` and `config publish`: a config file checked
//! exactly as the roles would load it, and published to a cluster.

use anyhow::Context;
use std::path::Path;

/// A file checked: the config, and what GeoDNS made of its geo database.
struct CheckedFile {
    config: config::Config,
    text: String,
    database: String,
}

/// Reads and checks one file: the config, and its geo database loaded and
/// turned into GeoDNS's table exactly as `meridian geodns` would (within
/// the same limits), so that a database GeoDNS would refuse is caught
/// before it is deployed. The error names the file, the key and the reason.
fn check_file(file: &Path) -> Result<CheckedFile, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("{}: cannot read the file: {e}", file.display()))?;
    let source = config::ConfigSource::File(file.to_path_buf());
    let config = config::Config::from_toml(&text, source).map_err(|e| e.to_string())?;
    let checked = geodns::check(&config, &geodns::LoadLimit::default()).map_err(|e| match e {
        geodns::GeoDnsError::Geo(e) => format!("{}: geodns.geo_database: {e}", file.display()),
        other => format!("{}: {other}", file.display()),
    })?;
    Ok(CheckedFile {
        config,
        text,
        database: checked.database,
    })
}

/// `meridian config check`: every file is checked, every problem printed.
pub fn check(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    for file in files {
        match check_file(file) {
            Ok(checked) => println!(
                "{}: ok ({} regions: {}; geo database {})",
                file.display(),
                checked.config.regions.len(),
                checked.config.region_names().join(", "),
                checked.database
            ),
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    match failed {
        0 => Ok(()),
        n => anyhow::bail!("{n} of {} config files are invalid", files.len()),
    }
}

/// `meridian config publish FILE`: checks FILE as `check` does and stores
/// the very text it checked as the next config revision on the bus its
/// `[cluster]` names; nothing is published when anything fails.
pub fn publish(file: &Path) -> anyhow::Result<()> {
    let checked = check_file(file).map_err(|e| anyhow::anyhow!("{e}; nothing published"))?;
    let Some(cluster) = &checked.config.cluster else {
        anyhow::bail!(
            "{}: publishing needs [cluster] to know where the bus is; nothing published",
            file.display()
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let revision = runtime.block_on(async {
        let bus = cluster::Bus::connect(cluster, "meridian config publish", cluster::Connect::Now)
            .await?;
        let revision = cluster::config_store::publish(&bus, &checked.text).await?;
        bus.flush().await?;
        Ok::<_, cluster::BusError>(revision)
    })?;
    println!("published revision {revision}");
    Ok(())
}
