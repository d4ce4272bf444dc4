//! The cache tiers' gauges: lookups answered by memory and by disk, and
//! the disk tier's state. Set from the storage's counters when metrics are
//! rendered, like the cache's other sizes.

use crate::storage::TierStats;
use prometheus::{IntGauge, IntGaugeVec, Registry};

pub(super) struct TierGauges {
    hits: IntGaugeVec,
    disk: [IntGauge; 9],
}

/// The disk tier's gauges, in the order [`TierGauges::set`] fills them.
const DISK_GAUGES: [(&str, &str); 9] = [
    ("meridian_edge_disk_objects", "Objects in the disk tier"),
    (
        "meridian_edge_disk_bytes",
        "Bytes the disk tier's files occupy, against its budget",
    ),
    (
        "meridian_edge_disk_writes",
        "Objects written to the disk tier since start",
    ),
    (
        "meridian_edge_disk_writes_dropped",
        "Objects not written to disk because the writer queue was full, since start",
    ),
    (
        "meridian_edge_disk_evictions",
        "Objects evicted from the disk tier to stay within its budget, since start",
    ),
    (
        "meridian_edge_disk_damaged",
        "Damaged files (torn, truncated, changed) found and deleted, since start",
    ),
    (
        "meridian_edge_disk_errors",
        "Disk operations that failed (writes, reads, deletions), since start",
    ),
    (
        "meridian_edge_disk_rebuild_milliseconds",
        "How long rebuilding the disk tier's index from its files took at start",
    ),
    (
        "meridian_edge_disk_failing",
        "1 when a disk tier is configured but failing (or could not be opened), else 0",
    ),
];

impl TierGauges {
    pub(super) fn register(registry: &Registry) -> prometheus::Result<TierGauges> {
        let hits = IntGaugeVec::new(
            prometheus::Opts::new(
                "meridian_edge_cache_tier_hits",
                "Cache lookups answered by each tier (memory, disk) since start",
            ),
            &["tier"],
        )?;
        registry.register(Box::new(hits.clone()))?;
        let mut disk = Vec::with_capacity(DISK_GAUGES.len());
        for (name, help) in DISK_GAUGES {
            let gauge = IntGauge::new(name, help)?;
            registry.register(Box::new(gauge.clone()))?;
            disk.push(gauge);
        }
        let disk = disk
            .try_into()
            .map_err(|_| prometheus::Error::Msg("disk gauges".into()))?;
        Ok(TierGauges { hits, disk })
    }

    pub(super) fn set(&self, tiers: &TierStats) {
        let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.hits
            .with_label_values(&["memory"])
            .set(as_i64(tiers.memory_hits));
        self.hits
            .with_label_values(&["disk"])
            .set(as_i64(tiers.disk_hits));
        let Some(disk) = &tiers.disk else { return };
        let failing = u64::from(disk.failing.is_some());
        let values = match &disk.stats {
            Some(s) => [
                s.objects,
                s.bytes,
                s.writes,
                s.writes_dropped,
                s.evictions,
                s.damaged,
                s.errors,
                s.rebuild_millis,
                failing,
            ],
            None => [0, 0, 0, 0, 0, 0, 0, 0, failing],
        };
        for (gauge, value) in self.disk.iter().zip(values) {
            gauge.set(as_i64(value));
        }
    }
}
