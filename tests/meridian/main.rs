//! End-to-end tests of the `meridian` binary: real processes, real sockets.
//!
//! Each test runs the binary on its own loopback block (127.N.x.y), so tests
//! run in parallel and never clash with a running demo on 127.0.x.y.

// A test that cannot unwrap should fail loudly; that is what unwrap does.
#![allow(clippy::unwrap_used)]

mod admin_access;
mod benchmarks;
mod body_bytes;
mod cache;
mod cli;
mod cluster;
mod cluster_config;
mod disk;
mod dns;
mod failover;
mod faults;
mod geo_database;
mod harness;
mod hit_paths;
mod hostile;
mod hosts;
mod live_flows;
mod live_view;
mod nameservers;
mod origin_tls;
mod purge;
mod regional;
mod restarts;
mod tls;
mod up;
mod zero_copy;
