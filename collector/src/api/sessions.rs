//! Browser sessions of the operators' API (issue 10): after a password
//! login, a random 256-bit token in a cookie (`HttpOnly; Secure;
//! SameSite=Strict`), kept here only as its SHA-256, with an absolute and an
//! idle expiry, and a per-session CSRF token that every change made with the
//! cookie must echo in `X-CSRF-Token`. Logout forgets the session, so a
//! replayed cookie is refused. Failed logins are limited per address and per
//! name.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand_core::RngCore;
use sha2::Digest;

use crate::operators::Role;

pub const COOKIE: &str = "custody_session";
/// A session ends this long after the login, whatever happens.
pub const ABSOLUTE: Duration = Duration::from_secs(8 * 3600);
/// … or this long after its last request.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// At most this many failed logins per address, and per name, within
/// [`FAILURE_WINDOW`]; then 429 until the oldest falls out of it.
pub const MAX_FAILURES: usize = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// One logged-in operator.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub role: Role,
    pub csrf: String,
    created: Instant,
    last_used: Instant,
}

#[derive(Default)]
pub struct Sessions {
    by_token_hash: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

fn random_hex() -> String {
    let mut b = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn hash(token: &str) -> [u8; 32] {
    sha2::Sha256::digest(token.as_bytes()).into()
}

/// Constant-time comparison of two tokens.
pub fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// A new session: (cookie token, the session).
    pub fn create(&self, name: &str, role: Role) -> (String, Session) {
        let token = random_hex();
        let now = Instant::now();
        let s = Session {
            name: name.to_string(),
            role,
            csrf: random_hex(),
            created: now,
            last_used: now,
        };
        let mut map = self.by_token_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, v| live(v, now));
        map.insert(hash(&token), s.clone());
        (token, s)
    }

    /// The session of `token`, if it is live (its idle time restarts).
    pub fn get(&self, token: &str) -> Option<Session> {
        self.get_at(token, Instant::now())
    }

    fn get_at(&self, token: &str, now: Instant) -> Option<Session> {
        let mut map = self.by_token_hash.lock().unwrap_or_else(|p| p.into_inner());
        let key = hash(token);
        match map.get_mut(&key) {
            Some(s) if live(s, now) => {
                s.last_used = now;
                Some(s.clone())
            }
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, token: &str) {
        let mut map = self.by_token_hash.lock().unwrap_or_else(|p| p.into_inner());
        map.remove(&hash(token));
    }

    /// Seconds to wait before `ip` or `name` may try again, if limited.
    pub fn limited(&self, ip: IpAddr, name: &str) -> Option<u64> {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let mut wait = None;
        for key in [format!("ip:{ip}"), format!("name:{name}")] {
            let list = f.entry(key).or_default();
            list.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
            if list.len() >= MAX_FAILURES {
                let oldest = list[0];
                let left = FAILURE_WINDOW.saturating_sub(now.duration_since(oldest));
                wait = Some(wait.unwrap_or(0).max(left.as_secs().max(1)));
            }
        }
        wait
    }

    pub fn failed(&self, ip: IpAddr, name: &str) {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in [format!("ip:{ip}"), format!("name:{name}")] {
            f.entry(key).or_default().push(now);
        }
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < ABSOLUTE && now.duration_since(s.last_used) < IDLE
}

/// The session token a request's `Cookie:` header carries, if any.
pub fn token_of(headers: &hyper::HeaderMap) -> Option<String> {
    headers
        .get(hyper::header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| cookie(c, COOKIE))
        .map(str::to_string)
}

/// The `Set-Cookie` value that gives a browser `token`.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}",
        ABSOLUTE.as_secs()
    )
}

/// The `Set-Cookie` value that makes a browser forget its session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// The value of cookie `name` in a `Cookie:` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_or_old_and_end_on_logout() {
        let s = Sessions::default();
        let (token, session) = s.create("rita", Role::Responder);
        assert_eq!(token.len(), 64);
        assert_ne!(token, session.csrf);
        assert_eq!(s.get(&token).unwrap().name, "rita");
        let later = Instant::now() + IDLE + Duration::from_secs(1);
        assert!(s.get_at(&token, later).is_none(), "idle too long");
        let (token, _) = s.create("rita", Role::Responder);
        s.end(&token);
        assert!(s.get(&token).is_none(), "a cookie replayed after logout");
        assert!(s.get("not-a-token").is_none());
    }

    #[test]
    fn failures_are_limited_per_address_and_name() {
        let s = Sessions::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            assert_eq!(s.limited(ip, "rita"), None);
            s.failed(ip, "rita");
        }
        assert!(s.limited(ip, "rita").is_some());
        // Another name from the same address is limited too (spraying).
        assert!(s.limited(ip, "rob").is_some());
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(s.limited(other, "rita").is_some(), "the name is limited");
        assert!(s.limited(other, "rob").is_none());
    }

    #[test]
    fn cookies_and_tokens() {
        assert_eq!(cookie("a=1; custody_session=abc; b=2", COOKIE), Some("abc"));
        assert_eq!(cookie("a=1", COOKIE), None);
        assert!(same_token("abc", "abc") && !same_token("abc", "abd") && !same_token("ab", "abc"));
    }
}
