//! The metrics of topics: publications per topic, deliveries to subscribers by outcome, each
//! subscription's lag (messages published and not yet delivered), and Server-Sent Events
//! followers connected. Labelled by topic and subscriber type, so they are created on first use
//! (prometheus-client families).

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

/// A topic.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

/// A subscription: a topic and the subscriber entity type.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabel {
    pub topic: String,
    pub subscriber: String,
}

/// A delivery's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabel {
    pub topic: String,
    pub subscriber: String,
    pub outcome: &'static str,
}

/// Topic metrics (clones share the counters).
#[derive(Clone, Debug, Default)]
pub struct TopicMetrics {
    publications: Family<TopicLabel, Counter>,
    deliveries: Family<DeliveryLabel, Counter>,
    lag: Family<SubscriptionLabel, Gauge>,
    /// Server-Sent Events streams open on this node.
    pub followers: Gauge,
}

impl TopicMetrics {
    /// Registers the topic metrics in `registry`.
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "cella_topic_publications",
            "Messages appended to topics led here",
            self.publications.clone(),
        );
        registry.register(
            "cella_topic_deliveries",
            "Topic messages delivered to subscriber entities, by outcome (failed: the subscriber rejected or failed it)",
            self.deliveries.clone(),
        );
        registry.register(
            "cella_topic_subscriber_lag",
            "Messages of a topic led here not yet delivered to a subscriber type",
            self.lag.clone(),
        );
        registry.register(
            "cella_topic_followers",
            "Server-Sent Events streams of topics open on this node",
            self.followers.clone(),
        );
    }

    /// Records a message appended to `topic`.
    pub fn published(&self, topic: &str) {
        self.publications
            .get_or_create(&TopicLabel {
                topic: topic.to_string(),
            })
            .inc();
    }

    /// Records a delivery of a `topic` message to an entity of `subscriber`.
    pub fn delivered(&self, topic: &str, subscriber: &str, ok: bool) {
        self.deliveries
            .get_or_create(&DeliveryLabel {
                topic: topic.to_string(),
                subscriber: subscriber.to_string(),
                outcome: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Sets how many messages of `topic` wait for delivery to `subscriber`.
    pub fn set_lag(&self, topic: &str, subscriber: &str, lag: u64) {
        self.lag
            .get_or_create(&SubscriptionLabel {
                topic: topic.to_string(),
                subscriber: subscriber.to_string(),
            })
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
    }
}
