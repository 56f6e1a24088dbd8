//! The [`Registry`]: which connector serves which action family. It only maps names to
//! connectors; it never calls one.

use crate::Connector;
use std::collections::HashMap;
use std::sync::Arc;

/// Connectors by action family.
#[derive(Clone, Default)]
pub struct Registry {
    by_family: HashMap<String, Arc<dyn Connector>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a connector for its family, replacing any earlier one.
    pub fn register(&mut self, connector: Arc<dyn Connector>) {
        self.by_family
            .insert(connector.family().to_owned(), connector);
    }

    /// The connector serving an action, by the action's family (the part before the dot).
    pub fn resolve(&self, action: &str) -> Option<Arc<dyn Connector>> {
        let family = action.split_once('.').map_or(action, |(f, _)| f);
        self.by_family.get(family).cloned()
    }

    /// The families served.
    pub fn families(&self) -> impl Iterator<Item = &str> {
        self.by_family.keys().map(String::as_str)
    }
}
