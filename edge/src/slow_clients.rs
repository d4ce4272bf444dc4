//! Deadlines for slow clients.
//!
//! Pingora times out each read of a request head on its own (60 s), so a
//! client sending one header byte every 59 s (slowloris) keeps its
//! connection, and a few thousand such clients hold every file descriptor
//! an edge has. nginx bounds the whole head instead (`client_header_timeout`);
//! so does this module.
//!
//! [`HeaderDeadline`] wraps the proxy application. Each request on a
//! connection runs inside it with a flag, local to the connection's task,
//! that [`head_received`] sets once the head has been read (the proxy calls
//! it first thing). If the deadline passes and the flag is still clear, the
//! request is dropped, which closes the connection without a response. A
//! request whose head arrived in time is never cut off here, however long
//! it then takes. On a kept-alive connection the deadline also bounds the
//! idle wait for the next request, as Varnish's `timeout_idle` does.
//!
//! Pingora offers no hook between accepting a connection and reading its
//! head, hence the wrapper; it delegates everything else to the proxy.

use async_trait::async_trait;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::Stream;
use pingora::protocols::http::ServerSession;
use pingora::protocols::http::v2::server::H2Options;
use pingora::server::ShutdownWatch;
use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    /// Whether the current request's head has been read.
    static HEAD_RECEIVED: Cell<bool>;
}

/// Tells the deadline that the current request's head has arrived. Outside
/// a [`HeaderDeadline`] (e.g. in unit tests) it does nothing.
pub fn head_received() {
    let _ = HEAD_RECEIVED.try_with(|received| received.set(true));
}

/// An HTTP application whose clients must send each request head within
/// `timeout`.
pub struct HeaderDeadline<A> {
    app: Arc<A>,
    timeout: Duration,
}

impl<A> HeaderDeadline<A> {
    /// Wraps `app`.
    pub fn new(app: A, timeout: Duration) -> Self {
        HeaderDeadline {
            app: Arc::new(app),
            timeout,
        }
    }
}

#[async_trait]
impl<A> HttpServerApp for HeaderDeadline<A>
where
    A: HttpServerApp + Send + Sync + 'static,
{
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let serve = self.app.process_new_http(session, shutdown);
        HEAD_RECEIVED
            .scope(Cell::new(false), async move {
                tokio::pin!(serve);
                tokio::select! {
                    biased;
                    reused = &mut serve => reused,
                    () = tokio::time::sleep(self.timeout) => {
                        if HEAD_RECEIVED.with(Cell::get) {
                            serve.await
                        } else {
                            tracing::debug!(timeout = ?self.timeout, "no request head in time; closing");
                            None
                        }
                    }
                }
            })
            .await
    }

    fn h2_options(&self) -> Option<H2Options> {
        self.app.h2_options()
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        self.app.server_options()
    }

    async fn http_cleanup(&self) {
        self.app.http_cleanup().await;
    }

    async fn process_custom_session(
        self: Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        self.app
            .clone()
            .process_custom_session(stream, shutdown)
            .await
    }
}
