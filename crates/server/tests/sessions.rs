//! Console sessions end when idle or past their absolute expiry (audited), and writes need the
//! session's CSRF token.

use axum::http::{HeaderMap, HeaderValue, Method, header};
use belay_server::console::session::{self, authenticate};
use belay_server::{AppState, ServerConfig};
use belay_store::{SessionRecord, Store};
use std::sync::Arc;

async fn state() -> (Arc<AppState>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        belay_store::SqliteStore::open(dir.path(), belay_store::SqliteOptions::default()).unwrap(),
    );
    let now = belay_model::now_ms();
    let user = belay_store::UserRecord {
        name: "rita".into(),
        roles: vec!["responder".into()],
        password_hash: None,
        disabled: false,
        failed_logins: 0,
        locked_until: None,
        created_at: now,
        updated_at: now,
    };
    store.put_user(&user, "admin", "created").await.unwrap();
    let catalog = Arc::new(belay_playbook::Catalog::builtin());
    let engine = belay_engine::Engine::new(
        store,
        Arc::new(belay_playbook::PlaybookSet::default()),
        catalog.clone(),
        belay_connectors::Registry::new(),
        belay_engine::EngineConfig::default(),
    );
    (AppState::new(engine, catalog, ServerConfig::default()), dir)
}

fn with_cookie(secret: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{}={secret}", session::COOKIE)).unwrap(),
    );
    h
}

async fn stored(state: &AppState, secret: &str, last_seen_ago: i64, expires_in: i64) {
    let now = belay_model::now_ms();
    let record = SessionRecord {
        hash: belay_server::auth::token_hash(secret),
        id: format!("ses_{}", &secret[..4]),
        principal: "rita".into(),
        via: "password".into(),
        client: "192.0.2.1:1".into(),
        created_at: now - last_seen_ago,
        last_seen_at: now - last_seen_ago,
        expires_at: now + expires_in,
    };
    state.engine().store.start_session(&record).await.unwrap();
}

#[tokio::test]
async fn idle_and_expired_sessions_end_audited_and_writes_need_the_csrf_token() {
    let (state, _dir) = state().await;
    let hour = 3_600_000;
    stored(&state, "live-secret", 60_000, hour).await;
    stored(&state, "idle-secret", 31 * 60_000, hour).await;
    stored(&state, "old--secret", 60_000, -1).await;

    let live = with_cookie("live-secret");
    let s = authenticate(&state, &Method::GET, &live, "192.0.2.1:2", None)
        .await
        .unwrap();
    assert_eq!(
        (s.principal.name.as_str(), s.principal.session_id.as_deref()),
        ("rita", Some("ses_live"))
    );
    // A write: refused without the token or with another session's, accepted with its own.
    let refused = authenticate(&state, &Method::POST, &live, "c", None)
        .await
        .unwrap_err();
    assert_eq!(refused.status, 403);
    let other = session::csrf_of("idle-secret");
    let refused = authenticate(&state, &Method::POST, &live, "c", Some(&other))
        .await
        .unwrap_err();
    assert_eq!(refused.status, 403);
    let mut with_header = live.clone();
    with_header.insert(
        session::CSRF_HEADER,
        HeaderValue::from_str(&s.csrf).unwrap(),
    );
    assert!(
        authenticate(&state, &Method::POST, &with_header, "c", None)
            .await
            .is_ok()
    );

    for secret in ["idle-secret", "old--secret"] {
        let e = authenticate(
            &state,
            &Method::GET,
            &with_cookie(secret),
            "192.0.2.1:3",
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, 401, "{secret}: {e:?}");
        let hash = belay_server::auth::token_hash(secret);
        assert!(
            state
                .engine()
                .store
                .session_by_hash(&hash)
                .await
                .unwrap()
                .is_none(),
            "ended"
        );
    }
    let trail = state.engine().store.audit_entries(0, 100).await.unwrap();
    let expired: Vec<&str> = trail
        .iter()
        .filter(|e| e.kind == "session.expired")
        .map(|e| e.subject.as_str())
        .collect();
    assert_eq!(expired, ["ses_idle", "ses_old-"]);
}
