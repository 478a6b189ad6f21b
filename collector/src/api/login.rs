//! A password login, the same for the API (`POST /api/v1/login`) and the
//! console's form: the failure limit, one argon2 check off the async
//! workers, the session, the log line and the counters.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use super::sessions::Session;
use super::Api;

/// Why a login made no session.
pub enum Refused {
    /// Too many failures from this address or for this name: seconds to wait.
    Limited(u64),
    WrongNameOrPassword,
}

/// Checks `name`'s `password`; the new session's cookie token and session.
/// `surface` (`api`, `console`) only names where it happened in the log.
pub async fn attempt(
    api: &Api,
    addr: SocketAddr,
    name: &str,
    password: String,
    surface: &str,
) -> Result<(String, Session), Refused> {
    let metrics = &api.app.metrics;
    if let Some(wait) = api.sessions.limited(addr.ip(), name) {
        tracing::warn!(%addr, operator = %name, "{surface}: login refused: too many failures");
        metrics.api_login_failures.fetch_add(1, Ordering::Relaxed);
        return Err(Refused::Limited(wait));
    }
    let ca_dir = api.ca_dir.clone();
    let who = name.to_string();
    // argon2 is slow on purpose: off the async workers.
    let role =
        tokio::task::spawn_blocking(move || super::passwords::check(&ca_dir, &who, &password))
            .await
            .ok()
            .flatten();
    let Some(role) = role else {
        api.sessions.failed(addr.ip(), name);
        tracing::warn!(%addr, operator = %name, "{surface}: login failed");
        metrics.api_login_failures.fetch_add(1, Ordering::Relaxed);
        return Err(Refused::WrongNameOrPassword);
    };
    tracing::info!(%addr, operator = %name, role = role.as_str(), "{surface}: login");
    metrics.api_logins.fetch_add(1, Ordering::Relaxed);
    Ok(api.sessions.create(name, role))
}
