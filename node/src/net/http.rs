//! HTTP clients: one builder with the settings every outbound client of
//! Trail shares (SLS, Splunk HEC, the cloud tag APIs). Callers add what is
//! theirs (a DNS override for devstack, say) before `build()`.

use std::time::Duration;

/// What Trail says it is in every request.
pub const USER_AGENT: &str = concat!("trail/", env!("CARGO_PKG_VERSION"));

/// A client builder with Trail's defaults: its user agent, the given
/// connect and whole-request timeouts, idle connections kept below the
/// 60 s most load balancers allow, and no Nagle delay on small requests.
pub fn client_builder(connect: Duration, request: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect)
        .timeout(request)
        .pool_idle_timeout(Duration::from_secs(50))
        .tcp_nodelay(true)
}
