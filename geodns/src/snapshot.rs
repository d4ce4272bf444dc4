//! Everything one load of the config and geo database produces.
//!
//! A [`Snapshot`] is built whole, off to the side, and then swapped in with
//! one atomic pointer store ([`Live`]): a query is answered entirely from
//! the snapshot it started with, so a reload (SIGHUP, see [`crate::reload`])
//! can never mix an old zone with a new table, or drop a query. Only the
//! health view changes inside a snapshot, and only through atomics.

use crate::error::GeoDnsError;
use crate::flows::Flows;
use crate::geo::{GeoDatabase, LoadLimit};
use crate::health::HealthView;
use crate::metrics::DnsMetrics;
use crate::rate_limit::RateLimiter;
use crate::steering::Steering;
use crate::table::GeoTable;
use crate::zone::Zone;
use prometheus::IntCounter;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The id the next snapshot gets.
static NEXT_SNAPSHOT_ID: AtomicU64 = AtomicU64::new(1);

/// The snapshot queries are answered from; replaced whole by a reload.
pub type Live = arc_swap::ArcSwap<Snapshot>;

/// One loaded config: the zone, the steering table, the edges' health.
pub struct Snapshot {
    /// Unique in this process: answers remembered from one snapshot are
    /// never served from another (see [`crate::answer_cache`]).
    pub id: u64,
    /// The validated config it was built from.
    pub config: config::Config,
    /// The authoritative data.
    pub zone: Zone,
    /// Every address's region order and ECS scope.
    pub table: GeoTable,
    /// The edges' health as this GeoDNS probes it.
    pub health: Arc<HealthView>,
    /// Steered answers per region, indexed like `config.regions`.
    pub steered: Vec<IntCounter>,
    /// Steered answers per client country and region since this load.
    pub flows: Flows,
    /// The UDP replies' rate limit, if `[geodns.rate_limit]` sets one;
    /// every network's bucket starts full with each load.
    pub rate_limit: Option<RateLimiter>,
}

impl Snapshot {
    /// Loads the database `config` names, builds the table and the zone,
    /// within the default [`LoadLimit`] ([`crate::geo::LOAD_TIME_LIMIT`]).
    pub fn load(config: config::Config, metrics: &DnsMetrics) -> Result<Self, GeoDnsError> {
        Snapshot::load_within(config, metrics, &LoadLimit::default())
    }

    /// Loads the database `config` names, builds the table and the zone;
    /// fails when `limit` runs out or is called off. The health view
    /// starts with every edge up; a reload carries the known states over
    /// ([`HealthView::carry_over`]) before swapping in.
    pub fn load_within(
        config: config::Config,
        metrics: &DnsMetrics,
        limit: &LoadLimit,
    ) -> Result<Self, GeoDnsError> {
        let started = Instant::now();
        let (geo, table) = load_table(&config, limit)?;
        let stats = table.stats();
        tracing::info!(
            database = geo.description(),
            ipv4_ranges = stats.v4_ranges,
            ipv6_ranges = stats.v6_ranges,
            region_orders = stats.orders,
            table_bytes = stats.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "geo database loaded"
        );
        let zone = Zone::from_config(&config);
        let health = HealthView::from_config(&config);
        let steered = metrics.steered_counters(&config.region_names());
        let flows = Flows::new(config.regions.len());
        let rate_limit = config.geodns.rate_limit.as_ref().map(|limit| {
            tracing::info!(
                responses_per_second = limit.responses_per_second,
                burst = limit.burst,
                slip = limit.slip,
                ipv4_prefix_length = limit.ipv4_prefix_length,
                ipv6_prefix_length = limit.ipv6_prefix_length,
                "UDP replies are rate limited per client network"
            );
            RateLimiter::new(limit)
        });
        Ok(Snapshot {
            id: NEXT_SNAPSHOT_ID.fetch_add(1, Ordering::Relaxed),
            config,
            zone,
            table,
            health,
            flows,
            steered,
            rate_limit,
        })
    }
}

/// The database `config` names and its table, within `limit`.
fn load_table(
    config: &config::Config,
    limit: &LoadLimit,
) -> Result<(GeoDatabase, GeoTable), GeoDnsError> {
    let geo = GeoDatabase::from_config(&config.geodns.geo_database)?;
    let steering = Steering::from_config(config);
    let table = GeoTable::build_within(&geo, &steering, limit)?;
    Ok((geo, table))
}

/// What [`check`] found: the database and the table GeoDNS would build.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The database's type, node count and build date.
    pub database: String,
    /// The table's size.
    pub table: crate::table::TableStats,
}

/// Does everything a GeoDNS start does with `config` short of binding:
/// loads its geo database and builds the table (within `limit`); the zone
/// cannot fail once the config is valid. For `meridian config check`, so that a database GeoDNS would
/// refuse is caught before it is deployed.
pub fn check(config: &config::Config, limit: &LoadLimit) -> Result<Checked, GeoDnsError> {
    let (geo, table) = load_table(config, limit)?;
    Ok(Checked {
        database: geo.description().to_owned(),
        table: table.stats(),
    })
}
