//! Console sessions: signing in with the admin token, the cookie, the CSRF token.
//!
//! The cookie holds 32 random bytes and nothing else (never the admin token); the
//! server keeps, in memory, the session under the SHA-256 of that value, with its
//! CSRF token, its expiry and a public handle that names it in the audit trail
//! (`console:<handle>`) without revealing the cookie.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::signin::{Password, Throttle};
use super::{html, Failure, Fields};
use crate::api::AppState;
use crate::problem::Kind;

/// The session cookie's name.
pub const COOKIE: &str = "berqenas_console";
/// How long a session lasts after sign-in (it is not extended by use).
const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// More live sessions than this and the oldest is dropped: memory stays bounded.
const MAX_SESSIONS: usize = 1024;

struct Session {
    handle: String,
    csrf: String,
    expires: Instant,
}

/// The signed-in sessions, and what signing in is checked against.
#[derive(Default)]
pub struct Sessions {
    by_hash: Mutex<HashMap<[u8; 32], Session>>,
    /// `--console-password`, as its hash.
    password: Option<Password>,
    throttle: Throttle,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// Sessions that also open with this console password.
    pub fn with_password(password: Password) -> Self {
        Self {
            password: Some(password),
            ..Self::default()
        }
    }

    /// A new session; answers the cookie value (shown to the browser only).
    fn open(&self) -> String {
        let cookie = random_hex(32);
        let now = Instant::now();
        let mut map = self.by_hash.lock().unwrap();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.expires).map(|(k, _)| *k) {
                map.remove(&oldest);
            }
        }
        map.insert(
            digest(&cookie),
            Session {
                handle: random_hex(4),
                csrf: random_hex(32),
                expires: now + LIFETIME,
            },
        );
        cookie
    }

    fn find(&self, cookie: &str) -> Option<Operator> {
        let map = self.by_hash.lock().unwrap();
        let s = map.get(&digest(cookie))?;
        (s.expires > Instant::now()).then(|| Operator {
            actor: format!("console:{}", s.handle),
            csrf: s.csrf.clone(),
            cookie_hash: digest(cookie),
        })
    }

    fn close(&self, hash: &[u8; 32]) {
        self.by_hash.lock().unwrap().remove(hash);
    }

    /// How many sessions are signed in (expired ones included until the next sign-in).
    pub fn len(&self) -> usize {
        self.by_hash.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The signed-in operator of a request.
pub struct Operator {
    /// Who did it, for the audit trail: `console:<handle>`.
    pub actor: String,
    /// The token every form of this session carries.
    pub csrf: String,
    cookie_hash: [u8; 32],
}

impl Operator {
    /// Refuses a posted form whose CSRF token is not this session's: another site
    /// can make the browser post, but cannot read the token from our pages.
    pub fn check(&self, form: &Fields) -> Result<(), Failure> {
        let sent = form.get("csrf").map(String::as_str).unwrap_or("");
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            Ok(())
        } else {
            Err(Failure::new(
                Kind::Forbidden,
                "csrf",
                "the form's CSRF token is missing or not this session's; reload the page and try again",
            ))
        }
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(op) = cookie_value(&parts.headers, COOKIE).and_then(|c| state.console.find(c)) {
            return Ok(op);
        }
        // A page asked for is a sign-in away; an action is refused outright (it is
        // not replayed after signing in).
        Err(if parts.method == Method::GET {
            Redirect::to("/console/login").into_response()
        } else {
            Failure::new(
                Kind::Unauthorized,
                "not_signed_in",
                "not signed in, or the session expired: sign in again",
            )
            .into_response()
        })
    }
}

pub async fn login_form(State(state): State<AppState>) -> Response {
    html::bare("Sign in", &sign_in_form(&state, None)).into_response()
}

fn sign_in_form(state: &AppState, error: Option<&str>) -> String {
    let label = if state.console.password.is_some() {
        "Admin token or console password"
    } else {
        "Admin token"
    };
    let error = error
        .map(|e| {
            format!(
                "<p class=\"error\" id=\"error-message\">{}</p>",
                html::esc(e)
            )
        })
        .unwrap_or_default();
    format!(
        "<section class=\"login\"><h2>Sign in</h2>{error}\
         <form method=\"post\" action=\"/console/login\">\
         <label>{label} <input type=\"password\" name=\"token\" id=\"token\" autocomplete=\"off\" required></label>\
         <button type=\"submit\" id=\"sign-in\">Sign in</button></form></section>"
    )
}

/// Sign-in: the admin token or the console password (each compared in constant
/// time) opens a session. Wrong ones are counted per client address: past
/// [`super::signin::MAX_WRONG`] a minute the address gets 429 with `Retry-After`, whatever it sends.
pub async fn login(
    State(state): State<AppState>,
    parts: Parts,
    Form(form): Form<Fields>,
) -> Response {
    let headers = &parts.headers;
    let addr = crate::api::client_addr::of(&parts, &state.platform.network.trusted_proxies);
    let sessions = &state.console;
    if let Some(wait) = sessions.throttle.refused(addr) {
        tracing::warn!(client.addr = ?addr, "console sign-in refused: too many wrong ones");
        let secs = wait.as_secs().max(1);
        let body = sign_in_form(
            &state,
            Some(&format!(
                "too many wrong sign-ins from your address: try again in {secs} s"
            )),
        );
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            html::bare("Sign in", &body),
        )
            .into_response();
    }
    let token = form.get("token").map(String::as_str).unwrap_or("");
    let by_password = sessions
        .password
        .as_ref()
        .is_some_and(|p| !token.is_empty() && p.matches(token));
    if token.is_empty() || !(state.is_admin_token(token) || by_password) {
        sessions.throttle.wrong(addr);
        tracing::warn!(client.addr = ?addr, "console sign-in refused: wrong admin token or password");
        let message = if sessions.password.is_some() {
            "wrong admin token or console password"
        } else {
            "wrong admin token"
        };
        return (
            StatusCode::UNAUTHORIZED,
            html::bare("Sign in", &sign_in_form(&state, Some(message))),
        )
            .into_response();
    }
    sessions.throttle.right(addr);
    let cookie = state.console.open();
    tracing::info!(by_password, "console sign-in");
    // Secure when the browser reached us over TLS (berqenas itself serves plain HTTP;
    // a TLS proxy in front says so).
    let tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let set = format!(
        "{COOKIE}={cookie}; Path=/console; Max-Age={}; HttpOnly; SameSite=Strict{}",
        LIFETIME.as_secs(),
        if tls { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, set)], Redirect::to("/console")).into_response()
}

pub async fn logout(
    State(state): State<AppState>,
    op: Operator,
    Form(form): Form<Fields>,
) -> Result<Response, Failure> {
    op.check(&form)?;
    state.console.close(&op.cookie_hash);
    let clear = format!("{COOKIE}=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict");
    Ok((
        [(header::SET_COOKIE, clear)],
        Redirect::to("/console/login"),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_found_by_its_cookie_only() {
        let s = Sessions::default();
        let cookie = s.open();
        let op = s.find(&cookie).expect("the session");
        assert!(op.actor.starts_with("console:"));
        assert!(
            !op.actor.contains(&cookie[..8]),
            "the handle is not the cookie"
        );
        assert!(s.find("not-a-session").is_none());
        s.close(&digest(&cookie));
        assert!(s.find(&cookie).is_none());
    }

    #[test]
    fn a_wrong_csrf_token_is_refused() {
        let s = Sessions::default();
        let op = s.find(&s.open()).unwrap();
        let mut form = Fields::new();
        assert!(op.check(&form).is_err());
        form.insert("csrf".into(), "x".repeat(64));
        assert!(op.check(&form).is_err());
        form.insert("csrf".into(), op.csrf.clone());
        assert!(op.check(&form).is_ok());
    }

    #[test]
    fn the_cookie_is_read_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; berqenas_console=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
    }
}
