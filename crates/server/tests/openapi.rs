//! The OpenAPI document describes every route of the router, with the method and the role
//! the route table gives it.

use belay_server::{AppState, ServerConfig, router};
use std::sync::Arc;

#[tokio::test]
async fn every_route_is_in_the_openapi_document_with_its_role() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn belay_store::Store> = Arc::new(
        belay_store::SqliteStore::open(dir.path(), belay_store::SqliteOptions::default()).unwrap(),
    );
    let catalog = Arc::new(belay_playbook::Catalog::builtin());
    let engine = belay_engine::Engine::new(
        store,
        Arc::new(belay_playbook::PlaybookSet::default()),
        catalog.clone(),
        belay_connectors::Registry::new(),
        belay_engine::EngineConfig::default(),
    );
    let state = AppState::new(engine, catalog, ServerConfig::default());
    let (_router, routes) = router(state.clone());
    let doc = state.openapi.get().expect("the router made the document");
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut described = 0;
    for r in &routes {
        let method = r.method.as_str().to_ascii_lowercase();
        let op = &paths
            .get(r.path)
            .unwrap_or_else(|| panic!("{} {} is not in the OpenAPI document", r.method, r.path))
            [&method];
        assert!(
            op.is_object(),
            "{} {} has no operation in the document",
            r.method,
            r.path
        );
        let role = r.role.map_or("none", |role| role.as_str());
        assert_eq!(op["x-required-role"], role, "{} {}", r.method, r.path);
        if r.role.is_some() {
            assert!(
                op["responses"]["401"].is_object() && op["responses"]["403"].is_object(),
                "{} {} does not document 401 and 403",
                r.method,
                r.path
            );
        }
        described += 1;
    }
    // And the document describes nothing the router does not serve.
    let operations: usize = paths
        .values()
        .map(|p| {
            p.as_object().map_or(0, |o| {
                o.keys().filter(|k| k.as_str() != "parameters").count()
            })
        })
        .sum();
    assert_eq!(
        operations, described,
        "the document describes routes the router lacks"
    );
}

#[test]
fn every_schema_a_route_names_is_the_type_it_answers() {
    // A request type named like a record (say `Decision`) would replace the record's schema
    // in the document; the record's shape must win where records are answered.
    let doc = belay_server::openapi_json();
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    assert_eq!(
        schemas["Decision"]["type"], "string",
        "{}",
        schemas["Decision"]
    );
    assert_eq!(schemas["DecisionRequest"]["type"], "object");
    for record in [
        "RunRecord",
        "StepRecord",
        "ChangeRecord",
        "Event",
        "CaseRecord",
    ] {
        assert!(
            schemas[record]["required"].is_array(),
            "{record} is not described: {}",
            schemas[record]
        );
    }
}
