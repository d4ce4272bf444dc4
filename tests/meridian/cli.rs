//! Configuration commands, and bad configs refused before anything starts.

use crate::harness::{RunToEnd, Topology, meridian, tcp_listening, tempdir, write};

#[test]
fn config_default_prints_a_config_that_checks() {
    let text = meridian().args(["config", "default"]).ran().succeeds();
    assert!(text.contains("cdn.meridian.test."));
    let dir = tempdir();
    let path = write(&dir, "default.toml", &text);
    let checked = meridian().args(["config", "check"]).arg(&path).ran();
    assert!(checked.succeeds().contains("ok (3 regions"));
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
    meridian()
        .args(["config", "check"])
        .args(&copies)
        .ran()
        .succeeds();
}

#[test]
fn a_bad_value_is_refused_with_file_key_and_reason_and_nothing_starts() {
    let block = 43;
    let dir = tempdir();
    let path = Topology::demo(block)
        .latitude(2, 153.35)
        .write_unchecked(dir.path(), "bad.toml")
        .unwrap();
    let stderr = meridian()
        .args(["config", "check"])
        .arg(&path)
        .ran()
        .fails();
    let expected = format!(
        "{}: region[1].latitude: must be between -90 and 90",
        path.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    for args in [
        &["up"][..],
        &["geodns"],
        &["edge", "--region", "eu-west"],
        &["origin", "--region", "eu-west"],
    ] {
        let stderr = meridian()
            .args(args)
            .arg("--config")
            .arg(&path)
            .ran()
            .fails();
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
fn bad_invocations_say_what_is_wrong() {
    let dir = tempdir();
    let typo = Topology::demo(44)
        .rename("edge.http_port", "htp_port")
        .write_unchecked(dir.path(), "typo.toml")
        .unwrap();
    let typo = typo.to_str().unwrap();
    for (args, says) in [
        // An unknown key is refused.
        (
            &["config", "check", typo][..],
            "edge.htp_port: unknown field",
        ),
        // An unknown region lists the known ones.
        (
            &["origin", "--region", "mars"],
            "us-east, eu-west, ap-southeast",
        ),
        // A missing config file is named.
        (
            &["config", "check", "/nonexistent/meridian.toml"],
            "/nonexistent/meridian.toml: cannot read the file",
        ),
    ] {
        let stderr = meridian().args(args).ran().fails();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["geodns", "--help"],
        &["edge", "--help"],
        &["origin", "--help"],
        &["config", "check", "--help"],
    ] {
        let stdout = meridian().args(args).ran().succeeds();
        assert!(stdout.contains("Usage"), "{args:?}");
    }
}
