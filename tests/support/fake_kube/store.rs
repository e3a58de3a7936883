//! The objects, the one global resourceVersion counter, and the history of
//! changes that watches replay, as etcd and the watch cache keep them.

use super::resources::ResourceType;
use super::selector::Selectors;
use super::watch::Subscription;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The first resourceVersion handed out is one past this. Not zero, so that
/// no list ever answers "0", which means "any version" to a client.
const FIRST_RESOURCE_VERSION: u64 = 1000;

pub(super) struct Store {
    /// The last resourceVersion handed out; every write to any object takes
    /// the next one, as etcd's revision does.
    pub(super) resource_version: u64,
    /// Ordered as etcd keys are, so lists come out sorted by namespace, name.
    pub(super) objects: BTreeMap<ObjectKey, Value>,
    pub(super) history: Vec<Change>,
    /// Watches may resume from this version or later; older ones are told
    /// 410 Expired, as after an etcd compaction.
    pub(super) oldest_resumable: u64,
    pub(super) watches: Vec<Subscription>,
    pub(super) next_watch_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ObjectKey {
    pub plural: &'static str,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One write, as the watch cache keeps it.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub resource_version: u64,
    pub resource: &'static ResourceType,
    pub change_type: ChangeType,
    /// The object after the change; for a deletion, its last state stamped
    /// with the deletion's resourceVersion.
    pub object: Value,
    /// The object before the change, so that a watch whose selector stops
    /// (or starts) matching sees DELETED (or ADDED) instead of MODIFIED.
    pub previous: Option<Value>,
}

// === impl ObjectKey ===

impl ObjectKey {
    pub fn new(resource: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            plural: resource.plural,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

// === impl Store ===

impl Store {
    pub fn new() -> Store {
        Store {
            resource_version: FIRST_RESOURCE_VERSION,
            objects: BTreeMap::new(),
            history: Vec::new(),
            oldest_resumable: 0,
            watches: Vec::new(),
            next_watch_id: 1,
        }
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// The objects a list answers, in key order.
    pub fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        selectors: &Selectors,
    ) -> Vec<Value> {
        self.objects
            .iter()
            .filter(|(key, _)| key.plural == resource.plural)
            .filter(|(key, _)| namespace.is_none_or(|ns| key.namespace == ns))
            .filter(|(_, object)| selectors.matches(object))
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// Forgets the history: a watch resuming from any version before now is
    /// told 410 Expired and must list again.
    pub fn compact(&mut self) {
        self.history.clear();
        self.oldest_resumable = self.resource_version;
    }

    /// Stores `object` under `key` at the next resourceVersion, records the
    /// change and tells every open watch. Returns the stored object.
    pub fn commit_write(
        &mut self,
        resource: &'static ResourceType,
        key: ObjectKey,
        mut object: Value,
    ) -> Value {
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        let previous = self.objects.insert(key, object.clone());
        let change_type = match previous {
            Some(_) => ChangeType::Modified,
            None => ChangeType::Added,
        };
        self.record(Change {
            resource_version: self.resource_version,
            resource,
            change_type,
            object: object.clone(),
            previous,
        });
        object
    }

    /// Removes the object at the next resourceVersion, records the change and
    /// tells every open watch. Returns the object as it was last stored.
    pub fn commit_delete(
        &mut self,
        resource: &'static ResourceType,
        key: &ObjectKey,
    ) -> Option<Value> {
        let previous = self.objects.remove(key)?;
        self.resource_version += 1;
        let mut last_state = previous.clone();
        last_state["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.record(Change {
            resource_version: self.resource_version,
            resource,
            change_type: ChangeType::Deleted,
            object: last_state,
            previous: Some(previous.clone()),
        });
        Some(previous)
    }

    fn record(&mut self, change: Change) {
        // A watch whose reader has gone is forgotten here, on the next write.
        self.watches.retain(|watch| watch.offer(&change));
        self.history.push(change);
    }
}
