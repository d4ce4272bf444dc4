//! Configuration commands, and bad configs refused before anything starts.

use crate::harness::{Topology, meridian, tcp_listening, tempdir, write};

#[test]
fn config_default_prints_a_config_that_checks() {
    let output = meridian().args(["config", "default"]).output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("cdn.meridian.test."));
    let dir = tempdir();
    let path = write(&dir, "default.toml", &text);
    let check = meridian()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(String::from_utf8_lossy(&check.stdout).contains("ok (3 regions"));
}

#[test]
fn shipped_examples_check() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no example configs in {}",
        examples.display()
    );
    // `config check` loads the geo database too, and the examples name
    // files that live on the deployment hosts: each is checked from a copy
    // with a stand-in database (the embedded one's bytes) where it says.
    let dir = tempdir();
    let copies: Vec<_> = files
        .iter()
        .map(|file| {
            let copy = dir.path().join(file.file_name().unwrap());
            std::fs::copy(file, &copy).unwrap();
            let config = config::Config::load(&copy).unwrap();
            if let config::GeoDatabase::File(database) = &config.geodns.geo_database
                && !database.exists()
            {
                std::fs::write(database, geodns::geo::EMBEDDED_DATABASE).unwrap();
            }
            copy
        })
        .collect();
    let check = meridian()
        .args(["config", "check"])
        .args(&copies)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn a_bad_value_is_refused_with_file_key_and_reason_and_nothing_starts() {
    let block = 43;
    let dir = tempdir();
    let path = Topology::demo(block)
        .latitude(2, 153.35)
        .write_unchecked(dir.path(), "bad.toml")
        .unwrap();

    let check = meridian()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    let expected = format!(
        "{}: region[1].latitude: must be between -90 and 90",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    for args in [
        vec!["up"],
        vec!["geodns"],
        vec!["edge", "--region", "eu-west"],
        vec!["origin", "--region", "eu-west"],
    ] {
        let output = meridian()
            .args(&args)
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap();
        assert!(!output.status.success(), "{args:?} accepted a bad config");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("region[1].latitude"), "{args:?}: {stderr}");
    }
    for addr in [
        format!("127.{block}.0.1:5353"),
        format!("127.{block}.2.1:8080"),
        format!("127.{block}.2.2:8000"),
    ] {
        assert!(!tcp_listening(addr.parse().unwrap()), "{addr} was bound");
    }
}

#[test]
fn an_unknown_key_is_refused() {
    let dir = tempdir();
    let path = Topology::demo(44)
        .rename("edge.http_port", "htp_port")
        .write_unchecked(dir.path(), "typo.toml")
        .unwrap();
    let output = meridian()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("edge.htp_port: unknown field"), "{stderr}");
}

#[test]
fn an_unknown_region_lists_the_known_ones() {
    let output = meridian()
        .args(["origin", "--region", "mars"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("us-east, eu-west, ap-southeast"),
        "{stderr}"
    );
}

#[test]
fn a_missing_config_file_is_named() {
    let output = meridian()
        .args(["config", "check", "/nonexistent/meridian.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/meridian.toml: cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["up", "--help"],
        vec!["geodns", "--help"],
        vec!["edge", "--help"],
        vec!["origin", "--help"],
        vec!["config", "check", "--help"],
    ] {
        let output = meridian().args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("Usage"),
            "{args:?}"
        );
    }
}
