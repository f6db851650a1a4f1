//! Topics, as an entity type sees them: the [`Subscription`]s it declares (built with
//! [`Subscription::to`]), how each picks the receiving entity ([`SubscriberKey`]), and the
//! [`TopicMessage`] a delivered message's command finds in its context.

use serde_json::Value;

use crate::bindings::cella::entity::types as wit;

/// Entities of a type receive the messages of `topic` as the command `command` (the payload is
/// the message), each message exactly once per receiving entity, in topic order; `key` says which
/// entity (or entities) of the type receive a message.
///
/// Declared by [`ValueEntity::subscriptions`](crate::ValueEntity::subscriptions) and
/// [`EventSourcedEntity::subscriptions`](crate::EventSourcedEntity::subscriptions), usually
/// built with [`Subscription::to`]:
///
/// ```
/// use cella_sdk::{SubscriberKey, Subscription};
///
/// // Every message of `orders` goes to the entity named by its `customer` field...
/// let by_customer = Subscription::to("orders", "on-order").key_pointer("/customer");
/// // ...and to the one entity `all`.
/// let totals = Subscription::to("orders", "on-order").fixed_key("all");
/// assert_eq!(totals.key, SubscriberKey::Fixed("all".into()));
/// assert_eq!(by_customer.topic, "orders");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The topic's name.
    pub topic: String,
    /// The command a message runs (one of the type's commands).
    pub command: String,
    /// Which entity receives a message.
    pub key: SubscriberKey,
}

/// How a [`Subscription`] picks the entity that receives a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriberKey {
    /// A JSON pointer (RFC 6901, e.g. `/to` or `/order/customer`) into the message: a string
    /// (or number) there names one entity; an array of them names one entity per element, and
    /// each receives the message. The host does not deliver a message without a usable key
    /// there.
    Pointer(String),
    /// Always this one entity: every message of the topic goes to it.
    Fixed(String),
}

/// A [`Subscription`] with its topic and command, waiting for its key: see
/// [`Subscription::to`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "a subscription needs its key: call `key_pointer` or `fixed_key`"]
pub struct SubscriptionBuilder {
    topic: String,
    command: String,
}

impl Subscription {
    /// A subscription of `topic` whose messages run `command`; finish it with its key,
    /// [`key_pointer`](SubscriptionBuilder::key_pointer) or
    /// [`fixed_key`](SubscriptionBuilder::fixed_key).
    pub fn to(topic: impl Into<String>, command: impl Into<String>) -> SubscriptionBuilder {
        SubscriptionBuilder {
            topic: topic.into(),
            command: command.into(),
        }
    }

    /// The keys of the entities of the type that receive `message`, as the host picks them:
    /// the fixed key, or the string, number or array of them at the pointer. `Err` says why no
    /// entity receives it (the host would count it as a failed delivery).
    pub fn keys_of(&self, message: &Value) -> Result<Vec<String>, String> {
        let pointer = match &self.key {
            SubscriberKey::Fixed(key) => return Ok(vec![key.clone()]),
            SubscriberKey::Pointer(pointer) => pointer,
        };
        let Some(at) = message.pointer(pointer) else {
            return Err(format!("the message has nothing at `{pointer}`"));
        };
        let one = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!(
                "the message has {other} at `{pointer}` (a key is a string or a number)"
            )),
        };
        match at {
            Value::Array(items) => items.iter().map(one).collect(),
            v => one(v).map(|key| vec![key]),
        }
    }

    pub(crate) fn into_wit(self) -> wit::Subscription {
        wit::Subscription {
            topic: self.topic,
            command: self.command,
            key: match self.key {
                SubscriberKey::Pointer(pointer) => wit::SubscriberKey::Pointer(pointer),
                SubscriberKey::Fixed(key) => wit::SubscriberKey::Fixed(key),
            },
        }
    }

    pub(crate) fn from_wit(subscription: wit::Subscription) -> Self {
        Self {
            topic: subscription.topic,
            command: subscription.command,
            key: match subscription.key {
                wit::SubscriberKey::Pointer(pointer) => SubscriberKey::Pointer(pointer),
                wit::SubscriberKey::Fixed(key) => SubscriberKey::Fixed(key),
            },
        }
    }
}

impl SubscriptionBuilder {
    /// Each message goes to the entity (or entities) named at the JSON `pointer` in it (see
    /// [`SubscriberKey::Pointer`]).
    pub fn key_pointer(self, pointer: impl Into<String>) -> Subscription {
        self.key(SubscriberKey::Pointer(pointer.into()))
    }

    /// Every message goes to the one entity `key`.
    pub fn fixed_key(self, key: impl Into<String>) -> Subscription {
        self.key(SubscriberKey::Fixed(key.into()))
    }

    /// The subscription with this key.
    pub fn key(self, key: SubscriberKey) -> Subscription {
        Subscription {
            topic: self.topic,
            command: self.command,
            key,
        }
    }
}

/// Where the message a command delivers comes from: its topic and its offset there (1 for the
/// first message ever published to the topic). See [`Context::message`](crate::Context::message).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TopicMessage {
    /// The topic's name.
    pub topic: String,
    /// The message's offset in the topic.
    pub offset: u64,
}

impl TopicMessage {
    /// The message at `offset` of `topic`.
    pub fn new(topic: impl Into<String>, offset: u64) -> Self {
        Self {
            topic: topic.into(),
            offset,
        }
    }
}

impl From<wit::TopicMessage> for TopicMessage {
    fn from(message: wit::TopicMessage) -> Self {
        Self {
            topic: message.topic,
            offset: message.offset,
        }
    }
}

impl From<TopicMessage> for wit::TopicMessage {
    fn from(message: TopicMessage) -> Self {
        Self {
            topic: message.topic,
            offset: message.offset,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn builds_both_kinds_of_key() {
        assert_eq!(
            Subscription::to("news", "on-news").key_pointer("/to"),
            Subscription {
                topic: "news".into(),
                command: "on-news".into(),
                key: SubscriberKey::Pointer("/to".into()),
            }
        );
        let fixed = Subscription::to("news", "on-news").fixed_key("all");
        assert_eq!(fixed.key, SubscriberKey::Fixed("all".into()));
        let wit = fixed.clone().into_wit();
        assert!(matches!(&wit.key, wit::SubscriberKey::Fixed(k) if k == "all"));
        assert_eq!(Subscription::from_wit(wit), fixed);
    }

    #[test]
    fn picks_keys_as_the_host_does() {
        let by = Subscription::to("t", "c").key_pointer("/to");
        assert_eq!(by.keys_of(&json!({"to": "a"})), Ok(vec!["a".into()]));
        assert_eq!(by.keys_of(&json!({"to": 7})), Ok(vec!["7".into()]));
        assert_eq!(
            by.keys_of(&json!({"to": ["a", "b", 3]})),
            Ok(vec!["a".into(), "b".into(), "3".into()])
        );
        assert!(by.keys_of(&json!({"from": "a"})).is_err());
        assert!(by.keys_of(&json!({"to": {"k": 1}})).is_err());
        assert!(by.keys_of(&json!({"to": ["a", null]})).is_err());
        let fixed = Subscription::to("t", "c").fixed_key("all");
        assert_eq!(fixed.keys_of(&json!(null)), Ok(vec!["all".into()]));
    }
}
