//! The built-in demo site every origin serves when no `root` is configured.
//!
//! It exists so that the demo, the tests and the benchmarks need no files on
//! disk, and so that every region serves byte-identical assets: an edge that
//! fails over from one region's origin to another must get the same bodies
//! (and, through [`crate::memory_backend`], the same validators). Only
//! `index.html` differs between regions: it names the region that served it,
//! which is the point of the demo.
//!
//! The binary assets are pseudo-random rather than zeros on purpose: a body
//! that compresses to nothing, or whose every prefix looks like every other,
//! would hide truncation, offset and mix-up bugs in caches and Range handling.

use bytes::Bytes;

/// One generated file: its path relative to the site root (no leading `/`)
/// and its contents.
pub(crate) type SiteFile = (&'static str, Bytes);

/// The binary assets: path, exact size in bytes, and the xorshift seed that
/// makes each file's bytes different from the others'.
const BINARY_ASSETS: [(&str, usize, u64); 3] = [
    ("assets/1k.bin", 1024, 0x9E37_79B9_7F4A_7C15),
    ("assets/100k.bin", 100 * 1024, 0xD1B5_4A32_D192_ED03),
    ("assets/1m.bin", 1024 * 1024, 0x8CB9_2BA7_2F3D_8DD7),
];

/// Every file of the demo site for the origin of `region`.
///
/// Deterministic: the same region always gets the same bytes, and every file
/// except `index.html` is the same for every region.
pub(crate) fn files(region: &str) -> Vec<SiteFile> {
    let mut files = vec![
        ("index.html", Bytes::from(index_html(region))),
        ("assets/style.css", Bytes::from_static(STYLE_CSS.as_bytes())),
        ("assets/app.js", Bytes::from_static(APP_JS.as_bytes())),
        ("assets/hello.txt", Bytes::from_static(HELLO_TXT.as_bytes())),
    ];
    for (path, len, seed) in BINARY_ASSETS {
        files.push((path, pseudo_random(len, seed)));
    }
    files
}

/// `len` bytes from a xorshift64 generator started at `seed` (which must be
/// non-zero: zero is xorshift's one fixed point).
fn pseudo_random(len: usize, seed: u64) -> Bytes {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// The landing page. Static apart from the (escaped) region name, so it is
/// byte-identical for a given region on every start.
fn index_html(region: &str) -> String {
    let region = escape_html(region);
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Meridian demo &mdash; origin {region}</title>
<link rel="stylesheet" href="/assets/style.css">
</head>
<body>
<main>
<h1>Meridian</h1>
<p>Meridian is a self-hostable, multi-region edge CDN with GeoDNS steering.
GeoDNS answers <code>cdn.meridian.test</code> with the edge of the nearest
healthy region; that edge serves assets from its cache and sends misses and
dynamic requests to its region's origin, or to the next-nearest region's
origin when its own is down.</p>
<p class="origin">This page came from origin <strong id="region">{region}</strong>.</p>
<h2>The demo regions</h2>
<table>
<tr><th>region</th><th>city</th><th>edge</th><th>origin</th></tr>
<tr><td>us-east</td><td>Ashburn</td><td>127.0.1.1</td><td>127.0.1.2:8000</td></tr>
<tr><td>eu-west</td><td>Dublin</td><td>127.0.2.1</td><td>127.0.2.2:8000</td></tr>
<tr><td>ap-southeast</td><td>Singapore</td><td>127.0.3.1</td><td>127.0.3.2:8000</td></tr>
</table>
<h2>Try it</h2>
<pre>
dig @127.0.0.1 -p 5353 cdn.meridian.test A +subnet=81.2.69.0/24   # GB &rarr; 127.0.2.1 (eu-west)
dig @127.0.0.1 -p 5353 cdn.meridian.test A +subnet=8.8.8.0/24     # US &rarr; 127.0.1.1 (us-east)
curl --resolve cdn.meridian.test:8080:127.0.2.1 http://cdn.meridian.test:8080/assets/1k.bin
meridian outage eu-west     # GB clients now get 127.0.1.1 within a few seconds
</pre>
<h2>On this origin</h2>
<ul>
<li>Cacheable assets: <a href="/assets/1k.bin">1k.bin</a>, <a href="/assets/100k.bin">100k.bin</a>,
<a href="/assets/1m.bin">1m.bin</a>, <a href="/assets/hello.txt">hello.txt</a></li>
<li>Dynamic, never cached: <a href="/api/whoami">/api/whoami</a></li>
</ul>
<p id="whoami"></p>
<script src="/assets/app.js"></script>
</main>
</body>
</html>
"#
    )
}

/// Escapes the characters that are special in HTML text and attributes.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE_CSS: &str = "\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; padding: 0 1rem; }
pre { background: #f4f4f4; padding: 1rem; overflow-x: auto; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.75rem; text-align: left; }
.origin { font-size: 1.25rem; }
";

const APP_JS: &str = "\
// /api/whoami is never cached, so after a failover it can name a different
// origin than the (cached) page around it: show both.
fetch(\"/api/whoami\")
  .then((response) => response.json())
  .then((who) => {
    document.getElementById(\"whoami\").textContent =
      \"/api/whoami was just answered by origin \" + who.region +
      \" for client \" + who.client + \".\";
  })
  .catch(() => {});
";

const HELLO_TXT: &str = "Hello from a Meridian demo origin.\n";

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a panic is the failure report
mod tests {
    use super::*;

    fn file<'a>(files: &'a [SiteFile], path: &str) -> &'a Bytes {
        match files.iter().find(|(p, _)| *p == path) {
            Some((_, body)) => body,
            None => panic!("no file {path}"),
        }
    }

    #[test]
    fn binary_assets_have_exact_sizes() {
        let files = files("eu-west");
        assert_eq!(file(&files, "assets/1k.bin").len(), 1024);
        assert_eq!(file(&files, "assets/100k.bin").len(), 102_400);
        assert_eq!(file(&files, "assets/1m.bin").len(), 1_048_576);
    }

    #[test]
    fn content_is_deterministic_across_calls() {
        assert_eq!(files("eu-west"), files("eu-west"));
    }

    #[test]
    fn only_index_differs_between_regions() {
        let eu = files("eu-west");
        let us = files("us-east");
        assert_eq!(eu.len(), us.len());
        for ((path_eu, body_eu), (path_us, body_us)) in eu.iter().zip(&us) {
            assert_eq!(path_eu, path_us);
            if *path_eu == "index.html" {
                assert_ne!(body_eu, body_us);
            } else {
                assert_eq!(body_eu, body_us, "{path_eu}");
            }
        }
    }

    #[test]
    fn binary_assets_are_not_trivially_compressible() {
        let files = files("eu-west");
        for (path, _, _) in BINARY_ASSETS {
            let body = file(&files, path);
            let zeros = body.iter().filter(|b| **b == 0).count();
            // Uniform bytes: about 1/256 are zero; all-zero or mostly-zero is a bug.
            assert!(zeros < body.len() / 64, "{path}: {zeros} zero bytes");
            let mut seen = [false; 256];
            for b in body.iter() {
                seen[usize::from(*b)] = true;
            }
            // 1024 uniform bytes hit about 251 of the 256 values.
            let distinct = seen.iter().filter(|s| **s).count();
            assert!(
                distinct > 240,
                "{path}: only {distinct} distinct byte values"
            );
        }
    }

    #[test]
    fn binary_assets_are_not_prefixes_of_each_other() {
        let files = files("eu-west");
        let small = file(&files, "assets/1k.bin");
        let medium = file(&files, "assets/100k.bin");
        let large = file(&files, "assets/1m.bin");
        assert_ne!(&medium[..1024], &small[..]);
        assert_ne!(&large[..1024], &small[..]);
        assert_ne!(&large[..102_400], &medium[..]);
    }

    #[test]
    fn index_names_the_region_and_the_demo_commands() {
        let files = files("ap-southeast");
        let index = std::str::from_utf8(file(&files, "index.html")).unwrap();
        assert!(index.contains("origin <strong id=\"region\">ap-southeast</strong>"));
        assert!(index.contains("dig @127.0.0.1 -p 5353 cdn.meridian.test A +subnet=81.2.69.0/24"));
        assert!(index.contains(
            "curl --resolve cdn.meridian.test:8080:127.0.2.1 http://cdn.meridian.test:8080/assets/1k.bin"
        ));
        for region in ["us-east", "eu-west", "ap-southeast"] {
            assert!(index.contains(&format!("<td>{region}</td>")), "{region}");
        }
    }

    #[test]
    fn region_name_is_escaped() {
        let files = files("<x&y>");
        let index = std::str::from_utf8(file(&files, "index.html")).unwrap();
        assert!(index.contains("&lt;x&amp;y&gt;"));
        assert!(!index.contains("<x&y>"));
    }
}
