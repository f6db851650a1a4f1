//! The typed handles on crdt data, one per crdt type: [`GCounter`], [`PNCounter`], [`GSet`],
//! [`ORSet`], [`LWWRegister`], [`Flag`], [`ORMap`] and [`Vote`]. A handle reads the data as the
//! host handed it in and records operations on it; an [`ORMap`] makes handles on the data under
//! its keys, which record operations with that path (creating the data with the handle's type).
//!
//! Reads see the command's own operations, whichever handle recorded them: a counter's value
//! includes this command's increments, a set's elements its adds and removes, a register its
//! `set`, a flag its `enable`/`disable`, a map its deletes and the data its handles created. A
//! vote reads as handed in (the value does not say whether this node voted before), and an
//! operation the data does not take (a handle of another type than the data's) changes nothing
//! here: the host fails the command. Data a command creates reads from empty, even where the
//! host brings back a deleted key's old data (see [`ORMap`]). Data that does not read as the
//! handle's type (a set read as a counter, an element that does not decode as `T`) fails the
//! command with `entity error: ...`.

use core::borrow::Borrow;
use core::fmt;
use core::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::model::{canonical, number};
use super::{CrdtAction, CrdtData, CrdtType, Cursor};

/// The common part of every handle: the type, its `CrdtData` impl, and where it is.
macro_rules! handle {
    (@common) => {
        /// The map keys leading to this data (empty for the entity's own data).
        pub fn path(&self) -> &[String] {
            self.at.path()
        }

        /// Whether the data exists (a map key is there), with this command's operations.
        pub fn exists(&self) -> bool {
            self.at.view().is_some()
        }

        /// The data's JSON view, as the host renders it, with this command's operations
        /// (`null` if it does not exist).
        pub fn view(&self) -> Value {
            self.at.view().unwrap_or(Value::Null)
        }

        fn record(&self, action: CrdtAction) {
            self.at.record(action, <Self as CrdtData>::TYPE);
        }

        /// The view read by `read`, or `None` (and the command fails) if it does not read.
        #[allow(dead_code)]
        fn read<R>(&self, read: impl FnOnce(&Value) -> Option<R>) -> Option<R> {
            let view = self.at.view()?;
            let read = read(&view);
            if read.is_none() {
                self.at.fail(format!(
                    "{} is {view}, not a value of type {}",
                    self.at.place(),
                    <Self as CrdtData>::TYPE
                ));
            }
            read
        }
    };
    ($(#[$doc:meta])* $name:ident, $kind:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name {
            at: Cursor,
        }

        impl CrdtData for $name {
            const TYPE: CrdtType = CrdtType::$kind;
            fn at(cursor: Cursor) -> Self {
                Self { at: cursor }
            }
        }

        impl $name {
            handle!(@common);
        }
    };
    ($(#[$doc:meta])* $name:ident<T>, $kind:ident) => {
        $(#[$doc])*
        pub struct $name<T = Value> {
            at: Cursor,
            element: PhantomData<fn() -> T>,
        }

        impl<T> Clone for $name<T> {
            fn clone(&self) -> Self {
                Self::at(self.at.clone())
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).field("path", &self.at.path()).finish()
            }
        }

        impl<T> CrdtData for $name<T> {
            const TYPE: CrdtType = CrdtType::$kind;
            fn at(cursor: Cursor) -> Self {
                Self { at: cursor, element: PhantomData }
            }
        }

        impl<T> $name<T> {
            handle!(@common);
        }
    };
}

handle! {
    /// A counter that only grows. Reads as a number (saturating at `u64::MAX`).
    GCounter, GCounter
}

impl GCounter {
    /// The count (0 for new data).
    pub fn value(&self) -> u64 {
        self.read(counter)
            .map_or(0, |n| u64::try_from(n.max(0)).unwrap_or(u64::MAX))
    }

    /// Adds `by`.
    pub fn increment(&mut self, by: u64) {
        self.record(CrdtAction::Increment(by));
    }
}

handle! {
    /// A counter that goes up and down. Reads as a number (saturating at the `i64` bounds).
    PNCounter, PnCounter
}

impl PNCounter {
    /// The count (0 for new data).
    pub fn value(&self) -> i64 {
        self.read(counter).map_or(0, |n| {
            i64::try_from(n).unwrap_or(if n < 0 { i64::MIN } else { i64::MAX })
        })
    }

    /// Adds `by`.
    pub fn increment(&mut self, by: u64) {
        self.record(CrdtAction::Increment(by));
    }

    /// Subtracts `by`.
    pub fn decrement(&mut self, by: u64) {
        self.record(CrdtAction::Decrement(by));
    }
}

handle! {
    /// A set that only grows, of elements `T` (JSON values by default). Elements are equal when
    /// their JSON is (objects' key order aside); they read in the order of their canonical JSON
    /// text (keys sorted, no whitespace).
    GSet<T>, GSet
}

handle! {
    /// An add-wins set of elements `T` (an add concurrent with a remove on another node wins);
    /// ordered as a [`GSet`].
    ORSet<T>, OrSet
}

/// The read and add methods sets share.
macro_rules! set_methods {
    ($name:ident) => {
        impl<T: Serialize + DeserializeOwned> $name<T> {
            /// The elements, in order.
            pub fn elements(&self) -> Vec<T> {
                let Some(items) = self.read(|view| view.as_array().cloned()) else {
                    return Vec::new();
                };
                let mut elements = Vec::with_capacity(items.len());
                for item in items {
                    match serde_json::from_value(item.clone()) {
                        Ok(element) => elements.push(element),
                        Err(e) => self.at.fail(format!(
                            "an element of {} does not decode ({e}): {item}",
                            self.at.place()
                        )),
                    }
                }
                elements
            }

            /// Whether `element` is in the set.
            pub fn contains<Q>(&self, element: &Q) -> bool
            where
                T: Borrow<Q>,
                Q: Serialize + ?Sized,
            {
                let (Some(element), Some(items)) = (
                    self.element(element),
                    self.read(|view| view.as_array().cloned()),
                ) else {
                    return false;
                };
                let text = canonical(&element);
                items.iter().any(|item| canonical(item) == text)
            }

            /// How many elements the set has.
            pub fn len(&self) -> usize {
                self.read(|view| view.as_array().map(Vec::len)).unwrap_or(0)
            }

            /// Whether the set has no element.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Adds `element`.
            pub fn add<Q>(&mut self, element: &Q)
            where
                T: Borrow<Q>,
                Q: Serialize + ?Sized,
            {
                if let Some(element) = self.element(element) {
                    self.record(CrdtAction::Add(element));
                }
            }

            fn element<Q: Serialize + ?Sized>(&self, element: &Q) -> Option<Value> {
                match serde_json::to_value(element) {
                    Ok(element) => Some(element),
                    Err(e) => {
                        let place = self.at.place();
                        self.at
                            .fail(format!("cannot serialize an element of {place}: {e}"));
                        None
                    }
                }
            }
        }
    };
}

set_methods!(GSet);
set_methods!(ORSet);

impl<T: Serialize + DeserializeOwned> ORSet<T> {
    /// Removes `element` (the adds of it this node has seen).
    pub fn remove<Q>(&mut self, element: &Q)
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        if let Some(element) = self.element(element) {
            self.record(CrdtAction::Remove(element));
        }
    }

    /// Removes every element this node has seen.
    pub fn clear(&mut self) {
        self.record(CrdtAction::Clear);
    }
}

handle! {
    /// A last-writer-wins register of one value `T` (a JSON value by default). A `set` is
    /// stamped by the host with the command's time; a later write (here or on another node)
    /// wins.
    LWWRegister<T>, LwwRegister
}

impl<T: Serialize + DeserializeOwned> LWWRegister<T> {
    /// The value, `None` before the first `set` (the host renders that as `null`, so a `null`
    /// value set reads as `None` too).
    pub fn value(&self) -> Option<T> {
        let view = self.at.view().filter(|view| !view.is_null())?;
        match serde_json::from_value(view.clone()) {
            Ok(value) => Some(value),
            Err(e) => {
                let place = self.at.place();
                self.at.fail(format!(
                    "the value of {place} does not decode ({e}): {view}"
                ));
                None
            }
        }
    }

    /// Writes `value`.
    pub fn set<Q>(&mut self, value: &Q)
    where
        T: Borrow<Q>,
        Q: Serialize + ?Sized,
    {
        match serde_json::to_value(value) {
            Ok(value) => self.record(CrdtAction::Set(value)),
            Err(e) => {
                let place = self.at.place();
                self.at
                    .fail(format!("cannot serialize the value of {place}: {e}"));
            }
        }
    }
}

handle! {
    /// An enable-wins flag (an enable concurrent with a disable on another node wins); off
    /// until enabled.
    Flag, Flag
}

impl Flag {
    /// Whether the flag is on.
    pub fn is_enabled(&self) -> bool {
        self.read(Value::as_bool).unwrap_or(false)
    }

    /// Turns the flag on.
    pub fn enable(&mut self) {
        self.record(CrdtAction::Enable);
    }

    /// Turns the flag off (the enables this node has seen).
    pub fn disable(&mut self) {
        self.record(CrdtAction::Disable);
    }

    /// Turns the flag off, as [`disable`](Flag::disable).
    pub fn clear(&mut self) {
        self.record(CrdtAction::Clear);
    }
}

handle! {
    /// One vote per node: this node's vote, counted with the other nodes'. Reads as handed in:
    /// this command's own [`vote`](Vote::vote) is not reflected.
    Vote, Vote
}

impl Vote {
    /// How many nodes vote for.
    pub fn votes_for(&self) -> u64 {
        self.field("votes_for", Value::as_u64).unwrap_or(0)
    }

    /// How many nodes have voted.
    pub fn voters(&self) -> u64 {
        self.field("voters", Value::as_u64).unwrap_or(0)
    }

    /// Whether more than half of the nodes that voted vote for.
    pub fn majority(&self) -> bool {
        self.field("majority", Value::as_bool).unwrap_or(false)
    }

    /// Records this node's vote (replacing its earlier one).
    pub fn vote(&mut self, vote: bool) {
        self.record(CrdtAction::Vote(vote));
    }

    fn field<R>(&self, name: &str, read: impl FnOnce(&Value) -> Option<R>) -> Option<R> {
        self.read(|view| view.get(name).and_then(read))
    }
}

handle! {
    /// An add-wins map from string keys to crdt data of any type (an update of a key concurrent
    /// with its delete on another node wins). Its accessors make handles on a key's data; the
    /// first operation through one creates the key with the handle's type. Deleted data is
    /// kept by the host: a key written again reads as its old data changed by the new
    /// operations (a counter does not restart from zero).
    ORMap, OrMap
}

impl ORMap {
    /// The map's JSON view: an object of its keys' views (`{}` for new data).
    pub fn value(&self) -> Value {
        self.read(|view| view.is_object().then(|| view.clone()))
            .unwrap_or_else(|| Value::Object(serde_json::Map::new()))
    }

    /// The keys, in order.
    pub fn keys(&self) -> Vec<String> {
        self.read(|view| view.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default()
    }

    /// Whether `key` is in the map.
    pub fn contains_key(&self, key: &str) -> bool {
        self.read(|view| view.as_object().map(|o| o.contains_key(key)))
            .unwrap_or(false)
    }

    /// How many keys the map has.
    pub fn len(&self) -> usize {
        self.read(|view| view.as_object().map(serde_json::Map::len))
            .unwrap_or(0)
    }

    /// Whether the map has no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The handle of type `D` on `key`'s data.
    pub fn get<D: CrdtData>(&self, key: &str) -> D {
        D::at(self.at.child(key))
    }

    /// The [`GCounter`] at `key`.
    pub fn g_counter(&self, key: &str) -> GCounter {
        self.get(key)
    }

    /// The [`PNCounter`] at `key`.
    pub fn pn_counter(&self, key: &str) -> PNCounter {
        self.get(key)
    }

    /// The [`GSet`] at `key`.
    pub fn g_set<T>(&self, key: &str) -> GSet<T> {
        self.get(key)
    }

    /// The [`ORSet`] at `key`.
    pub fn or_set<T>(&self, key: &str) -> ORSet<T> {
        self.get(key)
    }

    /// The [`LWWRegister`] at `key`.
    pub fn lww_register<T>(&self, key: &str) -> LWWRegister<T> {
        self.get(key)
    }

    /// The [`Flag`] at `key`.
    pub fn flag(&self, key: &str) -> Flag {
        self.get(key)
    }

    /// The [`ORMap`] at `key`.
    pub fn or_map(&self, key: &str) -> ORMap {
        self.get(key)
    }

    /// The [`Vote`] at `key`.
    pub fn vote(&self, key: &str) -> Vote {
        self.get(key)
    }

    /// Removes `key` (the updates of it this node has seen).
    pub fn delete(&mut self, key: &str) {
        self.record(CrdtAction::Delete(key.to_owned()));
    }

    /// Removes every key this node has seen.
    pub fn clear(&mut self) {
        self.record(CrdtAction::Clear);
    }
}

/// A counter's view as an integer.
fn counter(view: &Value) -> Option<i128> {
    view.is_number().then(|| number(view))
}
