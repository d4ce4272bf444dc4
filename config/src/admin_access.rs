//! Who may use an admin listener: the one rule shared by the control API
//! of `meridian up`, the edges' admin listeners and GeoDNS's.
//!
//! These listeners sit on loopback and have no login, so what keeps them
//! private is that only programs on this machine can reach them. A web page
//! open in a browser on the same machine is such a program, in two ways:
//!
//! - **Cross-site requests.** Any page may make the browser send a "simple"
//!   request (a `POST` with a form's content type, no custom headers) to
//!   `http://127.0.0.1:9000/...` without asking first; it cannot read the
//!   answer, but the outage has happened.
//! - **DNS rebinding.** A page from `attacker.example` makes its own name
//!   resolve to 127.0.0.1; from then on the browser considers the listener
//!   the page's own origin and lets it read every answer. The only trace is
//!   the `Host` header, which still says `attacker.example`.
//!
//! So [`AdminAccess::check`] refuses, before any route runs:
//!
//! 1. a request whose `Host` (and, in absolute form or HTTP/2, its target's
//!    authority) is not the listen address: the IP literal, with the listen
//!    port when a port is given, or `localhost` when the listener is on
//!    loopback. A listener on a wildcard address (0.0.0.0, ::) accepts any
//!    IP literal, since rebinding always needs a name. Names other than
//!    `localhost` are never accepted: a name is exactly what a rebinding
//!    attacker controls, so reaching a listener by name would need that name
//!    listed in the config, which no key offers; use the address. Answer:
//!    421 Misdirected Request.
//! 2. a request from another origin: an `Origin` header that is not
//!    `http://` + the request's own host, or `Sec-Fetch-Site` saying
//!    `cross-site` or `same-site`. Answer: 403.
//! 3. a state-changing request (any method but GET, HEAD, OPTIONS) that a
//!    page could send cross-origin without a CORS preflight: it needs the
//!    header [`CONTROL_HEADER`] or `Content-Type: application/json`, neither
//!    of which a browser sends to another origin without asking it first
//!    (and nothing here ever says yes). Answer: 403. `meridian outage`,
//!    `restore` and `status` send the header; a page served from the
//!    listener itself may too, with `fetch`.
//! 4. with a token configured (GeoDNS's `geodns.admin_token`), a request
//!    without `Authorization: Bearer <token>`, compared in constant time.
//!    Answer: 401.
//!
//! The decision is a pure function of the request's method, target and
//! headers and the listener's address, unit-tested as a table below; the
//! axum middleware ([`guard`], with the `axum` feature) only applies it.
//! It lives in `config` because every crate with a listener depends on it.

use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, ORIGIN};
use http::uri::Authority;
use http::{HeaderMap, HeaderName, Method, StatusCode, Uri};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// The header that marks a request as sent on purpose by a program (the
/// CLI, or a page of the listener's own origin), never by a cross-site
/// form or image: browsers preflight custom headers. Its value is not
/// checked; the CLI sends `1`.
pub const CONTROL_HEADER: &str = "x-meridian-control";

/// The `Sec-Fetch-Site` request header (Fetch Metadata).
const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The rule for one listener: where it listens, and the token its routes
/// need, if any.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    listen: SocketAddr,
    token: Option<Arc<str>>,
}

/// Why a request was refused; the `Display` text is the answer's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `Host` missing, repeated, malformed or naming another host.
    #[error(
        "this listener answers only requests for {allowed}, not {given}: \
         a browser page reaching it under another name (DNS rebinding) is refused"
    )]
    Misdirected {
        /// What it accepts, e.g. `127.0.0.1:9000 or localhost:9000`.
        allowed: String,
        /// What the request said, quoted, or a description of the problem.
        given: String,
    },
    /// A request made by a page of another origin.
    #[error("requests from another origin ({0}) are refused")]
    CrossOrigin(String),
    /// A state-changing request a page could send without a preflight.
    #[error(
        "a {method} here needs the header `X-Meridian-Control: 1` or a JSON body \
         (Content-Type: application/json), which a web page of another origin cannot send"
    )]
    SimpleRequest {
        /// The request's method.
        method: String,
    },
    /// The configured token is missing or wrong.
    #[error("this listener needs `Authorization: Bearer <token>` with its admin token")]
    Unauthorized,
}

impl Refusal {
    /// The status code the refusal is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            Refusal::CrossOrigin(_) | Refusal::SimpleRequest { .. } => StatusCode::FORBIDDEN,
            Refusal::Unauthorized => StatusCode::UNAUTHORIZED,
        }
    }
}

impl AdminAccess {
    /// The rule for a listener bound to `listen`, without a token.
    pub fn new(listen: SocketAddr) -> AdminAccess {
        AdminAccess {
            listen,
            token: None,
        }
    }

    /// The same, with every request needing `Authorization: Bearer token`
    /// when `token` is given.
    pub fn with_token(mut self, token: Option<&str>) -> AdminAccess {
        self.token = token.map(Arc::from);
        self
    }

    /// Whether a request with this method, target and headers may reach
    /// the routes; see the module documentation for the rule.
    pub fn check(&self, method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = self.host_of(uri, headers)?;
        same_origin(&host, headers)?;
        if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !headers.contains_key(CONTROL_HEADER)
            && !is_json(headers)
        {
            return Err(Refusal::SimpleRequest {
                method: method.to_string(),
            });
        }
        if let Some(token) = &self.token
            && !bearer_matches(headers, token)
        {
            return Err(Refusal::Unauthorized);
        }
        Ok(())
    }

    /// The request's host, checked: the `Host` header, which must be
    /// present once, and the target's authority when it has one (both must
    /// pass; HTTP/2 may carry only the latter).
    fn host_of(&self, uri: &Uri, headers: &HeaderMap) -> Result<Authority, Refusal> {
        let mut hosts = headers.get_all(HOST).iter();
        let header = match (hosts.next(), hosts.next()) {
            (Some(_), Some(_)) => return Err(self.misdirected("more than one Host header")),
            (Some(value), None) => Some(
                value
                    .to_str()
                    .map_err(|_| self.misdirected("a Host header that is not text"))?,
            ),
            (None, _) => None,
        };
        let target = uri.authority().map(Authority::as_str);
        let mut checked = None;
        for given in [target, header].into_iter().flatten() {
            checked = Some(self.allowed_host(given)?);
        }
        checked.ok_or_else(|| self.misdirected("a request without a Host header"))
    }

    /// `given` parsed, if it names this listener.
    fn allowed_host(&self, given: &str) -> Result<Authority, Refusal> {
        let refuse = || self.misdirected(&format!("Host {given:?}"));
        let authority: Authority = given.parse().map_err(|_| refuse())?;
        if given.contains('@')
            || authority
                .port_u16()
                .is_some_and(|p| p != self.listen.port())
        {
            return Err(refuse());
        }
        let listen = self.listen.ip();
        let host = authority.host();
        let allowed = if host.eq_ignore_ascii_case("localhost") {
            listen.is_loopback() || listen.is_unspecified()
        } else {
            match ip_literal(host) {
                Some(ip) => listen.is_unspecified() || ip.to_canonical() == listen.to_canonical(),
                None => false,
            }
        };
        if allowed {
            Ok(authority)
        } else {
            Err(refuse())
        }
    }

    fn misdirected(&self, given: &str) -> Refusal {
        let port = self.listen.port();
        let ip = self.listen.ip();
        let allowed = if ip.is_unspecified() {
            format!("an IP address with port {port}, or localhost:{port}")
        } else if ip.is_loopback() {
            format!("{} or localhost:{port}", self.listen)
        } else {
            self.listen.to_string()
        };
        Refusal::Misdirected {
            allowed,
            given: given.to_owned(),
        }
    }
}

/// An IP address as a URL host writes it: IPv6 in brackets, IPv4 bare.
/// Rust's parsers accept only the canonical dotted form, so `0x7f.1` and
/// `2130706433` are names here (and refused), as they should be.
fn ip_literal(host: &str) -> Option<IpAddr> {
    match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6),
        None => host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// Refuses a request a browser made for a page of another origin.
fn same_origin(host: &Authority, headers: &HeaderMap) -> Result<(), Refusal> {
    if let Some(site) = headers.get(SEC_FETCH_SITE) {
        // `none`: the user typed the address; `same-origin`: a page of
        // this listener. A `same-site` page is another port or scheme.
        let site = site.to_str().unwrap_or("");
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Err(Refusal::CrossOrigin(format!("Sec-Fetch-Site: {site}")));
        }
    }
    let mut origins = headers.get_all(ORIGIN).iter();
    let origin = match (origins.next(), origins.next()) {
        (None, _) => return Ok(()),
        (Some(_), Some(_)) => return Err(Refusal::CrossOrigin("several Origin headers".into())),
        (Some(origin), None) => origin,
    };
    let text = origin.to_str().unwrap_or("");
    let refuse = || Refusal::CrossOrigin(format!("Origin {text:?}"));
    // `null` (sandboxed frames, files, redirects) is never this listener.
    let uri: Uri = text.parse().map_err(|_| refuse())?;
    let is_http = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http"));
    let bare = matches!(uri.path(), "" | "/") && uri.query().is_none();
    match uri.authority() {
        Some(authority) if is_http && bare && same_authority(authority, host) => Ok(()),
        _ => Err(refuse()),
    }
}

/// Host and port equal, the port defaulting to HTTP's 80.
fn same_authority(a: &Authority, b: &Authority) -> bool {
    a.host().eq_ignore_ascii_case(b.host())
        && a.port_u16().unwrap_or(80) == b.port_u16().unwrap_or(80)
        && !a.as_str().contains('@')
}

/// Whether the body is declared JSON (`application/json`, parameters
/// allowed): not a content type a cross-origin page may send unasked.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in
/// constant time so response timing does not reveal the token.
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    let Some(given) = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

/// The header name of [`CONTROL_HEADER`], for clients.
pub fn control_header() -> HeaderName {
    HeaderName::from_static(CONTROL_HEADER)
}

#[cfg(feature = "axum")]
pub use middleware::guard;

#[cfg(feature = "axum")]
mod middleware {
    use super::AdminAccess;
    use axum::Router;
    use axum::extract::{Request, State};
    use axum::middleware::Next;
    use axum::response::{IntoResponse, Response};
    use http::header::WWW_AUTHENTICATE;
    use std::sync::Arc;

    /// `router` with every request, unknown paths included, checked by
    /// `access` before it reaches a route.
    pub fn guard<S>(router: Router<S>, access: AdminAccess) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        router.layer(axum::middleware::from_fn_with_state(
            Arc::new(access),
            check,
        ))
    }

    async fn check(
        State(access): State<Arc<AdminAccess>>,
        request: Request,
        next: Next,
    ) -> Response {
        match access.check(request.method(), request.uri(), request.headers()) {
            Ok(()) => next.run(request).await,
            Err(refusal) => {
                let mut response = (refusal.status(), format!("{refusal}\n")).into_response();
                if refusal == super::Refusal::Unauthorized {
                    response
                        .headers_mut()
                        .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
                }
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request to check: method, target, then header lines.
    fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        (method.parse().unwrap(), target.parse().unwrap(), map)
    }

    /// The status a listener on `listen` (with `token`) answers, 200 if
    /// the request passes.
    fn status(
        listen: &str,
        token: Option<&str>,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
    ) -> u16 {
        let access = AdminAccess::new(listen.parse().unwrap()).with_token(token);
        let (method, uri, headers) = request(method, target, headers);
        match access.check(&method, &uri, &headers) {
            Ok(()) => 200,
            Err(refusal) => refusal.status().as_u16(),
        }
    }

    const JSON: (&str, &str) = ("content-type", "application/json");
    const MARK: (&str, &str) = ("x-meridian-control", "1");

    #[test]
    fn hosts_must_name_the_listener() {
        let lo = "127.0.0.1:9000";
        let table: &[(&str, &str, u16)] = &[
            (lo, "127.0.0.1:9000", 200),
            (lo, "127.0.0.1", 200),
            (lo, "localhost:9000", 200),
            (lo, "LocalHost", 200),
            (lo, "attacker.example:9000", 421),
            (lo, "attacker.example", 421),
            (lo, "127.0.0.1:9001", 421),
            (lo, "127.0.0.2:9000", 421),
            (lo, "localhost:80", 421),
            (lo, "localhost.:9000", 421),
            (lo, "2130706433:9000", 421),
            (lo, "0x7f.0.0.1:9000", 421),
            (lo, "user@127.0.0.1:9000", 421),
            (lo, "127.0.0.1:9000/x", 421),
            (lo, "", 421),
            (lo, "[::1]:9000", 421),
            ("[::1]:9153", "[::1]:9153", 200),
            ("[::1]:9153", "localhost:9153", 200),
            ("[::1]:9153", "::1", 421),
            ("[::1]:9153", "[::2]:9153", 421),
            ("0.0.0.0:9153", "10.1.2.3:9153", 200),
            ("0.0.0.0:9153", "192.0.2.1", 200),
            ("0.0.0.0:9153", "[2001:db8::1]:9153", 200),
            ("0.0.0.0:9153", "localhost:9153", 200),
            ("0.0.0.0:9153", "10.1.2.3:9154", 421),
            ("0.0.0.0:9153", "metrics.example:9153", 421),
            ("[::]:9153", "10.1.2.3:9153", 200),
            ("[::]:9153", "rebind.example", 421),
            ("192.0.2.7:9080", "192.0.2.7:9080", 200),
            ("192.0.2.7:9080", "localhost:9080", 421),
            ("192.0.2.7:9080", "192.0.2.8:9080", 421),
        ];
        for (listen, host, expected) in table {
            let got = status(listen, None, "GET", "/status", &[("host", host)]);
            assert_eq!(got, *expected, "listen {listen}, Host {host:?}");
        }
    }

    #[test]
    fn the_host_must_be_there_once_and_match_the_target() {
        let lo = "127.0.0.1:9000";
        assert_eq!(status(lo, None, "GET", "/status", &[]), 421);
        let two = [("host", "127.0.0.1:9000"), ("host", "127.0.0.1:9000")];
        assert_eq!(status(lo, None, "GET", "/status", &two), 421);
        // Absolute form (and HTTP/2's :authority): the target is checked too.
        let good = [("host", "127.0.0.1:9000")];
        assert_eq!(
            status(lo, None, "GET", "http://127.0.0.1:9000/status", &good),
            200
        );
        assert_eq!(
            status(lo, None, "GET", "http://evil.example/status", &good),
            421
        );
        assert_eq!(
            status(lo, None, "GET", "http://127.0.0.1:9000/status", &[]),
            200
        );
        let evil = [("host", "evil.example")];
        assert_eq!(
            status(lo, None, "GET", "http://127.0.0.1:9000/status", &evil),
            421
        );
    }

    #[test]
    fn other_origins_are_refused() {
        let lo = "127.0.0.1:9000";
        let host = ("host", "127.0.0.1:9000");
        let table: &[(&[(&str, &str)], u16)] = &[
            (&[host], 200),
            (&[host, ("origin", "http://127.0.0.1:9000")], 200),
            (
                &[
                    ("host", "localhost:9000"),
                    ("origin", "http://localhost:9000"),
                ],
                200,
            ),
            (
                &[("host", "127.0.0.1"), ("origin", "http://127.0.0.1:80")],
                200,
            ),
            (&[host, ("origin", "http://attacker.example")], 403),
            (&[host, ("origin", "http://localhost:9000")], 403),
            (&[host, ("origin", "http://127.0.0.1:8080")], 403),
            (&[host, ("origin", "https://127.0.0.1:9000")], 403),
            (&[host, ("origin", "null")], 403),
            (&[host, ("origin", "")], 403),
            (&[host, ("origin", "http://127.0.0.1:9000/page")], 403),
            (&[host, ("origin", "http://u@127.0.0.1:9000")], 403),
            (
                &[
                    host,
                    ("origin", "http://127.0.0.1:9000"),
                    ("origin", "http://x.example"),
                ],
                403,
            ),
            (&[host, ("sec-fetch-site", "same-origin")], 200),
            (&[host, ("sec-fetch-site", "none")], 200),
            (&[host, ("sec-fetch-site", "cross-site")], 403),
            (&[host, ("sec-fetch-site", "same-site")], 403),
        ];
        for (headers, expected) in table {
            let get = status(lo, None, "GET", "/status", headers);
            assert_eq!(get, *expected, "GET with {headers:?}");
            let mut marked = headers.to_vec();
            marked.push(MARK);
            let post = status(lo, None, "POST", "/regions/x/outage", &marked);
            assert_eq!(post, *expected, "POST with {marked:?}");
        }
    }

    /// A method, the request's fields, and the status the rule gives it.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u16);

    #[test]
    fn state_changes_need_a_request_no_page_can_send_unasked() {
        let lo = "127.0.0.1:9000";
        let host = ("host", "127.0.0.1:9000");
        let table: &[Case<'_>] = &[
            ("GET", &[host], 200),
            ("HEAD", &[host], 200),
            ("OPTIONS", &[host], 200),
            ("POST", &[host], 403),
            ("POST", &[host, ("content-type", "text/plain")], 403),
            (
                "POST",
                &[host, ("content-type", "application/x-www-form-urlencoded")],
                403,
            ),
            (
                "POST",
                &[host, ("content-type", "multipart/form-data; boundary=x")],
                403,
            ),
            (
                "POST",
                &[host, ("content-type", "text/plain; x=application/json")],
                403,
            ),
            ("POST", &[host, JSON], 200),
            (
                "POST",
                &[host, ("content-type", "Application/JSON; charset=utf-8")],
                200,
            ),
            ("POST", &[host, MARK], 200),
            ("POST", &[host, ("x-meridian-control", "")], 200),
            ("PUT", &[host], 403),
            ("DELETE", &[host], 403),
            ("DELETE", &[host, MARK], 200),
            // The whole attack of the review: every part of it refused.
            (
                "POST",
                &[
                    ("host", "attacker.example:9000"),
                    ("origin", "http://attacker.example"),
                    ("content-type", "text/plain"),
                ],
                421,
            ),
        ];
        for (method, headers, expected) in table {
            let got = status(lo, None, method, "/regions/eu-west/outage", headers);
            assert_eq!(got, *expected, "{method} with {headers:?}");
        }
    }

    #[test]
    fn a_token_is_needed_on_every_route_when_configured() {
        let any = "0.0.0.0:9153";
        let token = Some("geodns-admin-token-1234");
        let host = ("host", "10.0.0.5:9153");
        let table: &[(&[(&str, &str)], u16)] = &[
            (&[host], 401),
            (
                &[host, ("authorization", "Bearer geodns-admin-token-1234")],
                200,
            ),
            (
                &[host, ("authorization", "Bearer geodns-admin-token-123")],
                401,
            ),
            (
                &[host, ("authorization", "Bearer geodns-admin-token-12345")],
                401,
            ),
            (
                &[host, ("authorization", "Basic geodns-admin-token-1234")],
                401,
            ),
            (
                &[host, ("authorization", "bearer geodns-admin-token-1234")],
                401,
            ),
            // The Host rule comes first: a good token does not excuse it.
            (
                &[
                    ("host", "rebind.example:9153"),
                    ("authorization", "Bearer geodns-admin-token-1234"),
                ],
                421,
            ),
        ];
        for (headers, expected) in table {
            for path in ["/healthz", "/health", "/metrics"] {
                assert_eq!(
                    status(any, token, "GET", path, headers),
                    *expected,
                    "{headers:?}"
                );
            }
        }
        assert_eq!(status(any, None, "GET", "/health", &[host]), 200);
    }

    #[test]
    fn refusals_say_what_is_accepted() {
        let access = AdminAccess::new("127.0.0.1:9000".parse().unwrap());
        let (method, uri, headers) = request("GET", "/status", &[("host", "evil.example:9000")]);
        let refusal = access.check(&method, &uri, &headers).unwrap_err();
        let text = refusal.to_string();
        assert!(text.contains("127.0.0.1:9000 or localhost:9000"), "{text}");
        assert!(text.contains("\"evil.example:9000\""), "{text}");
        let (method, uri, headers) = request("POST", "/x", &[("host", "127.0.0.1:9000")]);
        let text = access
            .check(&method, &uri, &headers)
            .unwrap_err()
            .to_string();
        assert!(text.contains("X-Meridian-Control: 1"), "{text}");
    }

    #[test]
    fn hostile_header_bytes_are_refused_not_panicked_on() {
        let access = AdminAccess::new("127.0.0.1:9000".parse().unwrap());
        let mut headers = HeaderMap::new();
        headers.insert(
            HOST,
            http::HeaderValue::from_bytes(b"\xff\xfe:9000").unwrap(),
        );
        let uri: Uri = "/status".parse().unwrap();
        assert_eq!(
            access
                .check(&Method::GET, &uri, &headers)
                .unwrap_err()
                .status(),
            StatusCode::MISDIRECTED_REQUEST
        );
        headers.insert(HOST, "127.0.0.1:9000".parse().unwrap());
        headers.insert(
            ORIGIN,
            http::HeaderValue::from_bytes(b"http://\xff").unwrap(),
        );
        assert_eq!(
            access
                .check(&Method::GET, &uri, &headers)
                .unwrap_err()
                .status(),
            StatusCode::FORBIDDEN
        );
    }
}
