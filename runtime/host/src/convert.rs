//! Conversions between the host's public types (`types.rs`) and the generated bindings of each
//! contract. What the two contracts share (descriptor, outcome, failure) converts the same way;
//! a `cella:entity@0.1.0` component is given a context without `correlation` and `timer`, and
//! its calls and timers come out with `reply_to` and `every_ms` set to `None`, its descriptor as
//! durable and not crdt, its outcomes without crdt operations.

use crate::{Call, CommandContext, Descriptor, Effect, Failure, Outcome};

/// The conversions whose WIT types are the same in every contract, for the `wit` module in scope.
macro_rules! shared_conversions {
    () => {
        impl From<wit::Failure> for Failure {
            fn from(f: wit::Failure) -> Self {
                match f {
                    wit::Failure::Rejected(m) => Failure::Rejected(m),
                    wit::Failure::UnknownCommand(m) => Failure::UnknownCommand(m),
                    wit::Failure::BadRequest(m) => Failure::BadRequest(m),
                }
            }
        }
    };
}

/// `cella:entity@0.1.0`.
mod v01 {
    use super::*;
    use crate::bindings::v01::cella::entity::types as wit;

    shared_conversions!();

    impl From<wit::Outcome> for Outcome {
        fn from(o: wit::Outcome) -> Self {
            Outcome {
                events: o.events,
                state: o.state,
                reply: o.reply,
                forward: o.forward.map(Call::from),
                effects: o.effects.into_iter().map(Effect::from).collect(),
                crdt_ops: Vec::new(),
                consistency: crate::Consistency::Local,
            }
        }
    }

    impl From<wit::Descriptor> for Descriptor {
        fn from(d: wit::Descriptor) -> Self {
            Descriptor {
                kind: match d.kind {
                    wit::EntityKind::Value => cella_core::EntityKind::Value,
                    wit::EntityKind::EventSourced => cella_core::EntityKind::EventSourced,
                },
                commands: d.commands,
                snapshot_every: d.snapshot_every,
                subscriptions: Vec::new(),
                events_topic: None,
                durability: crate::Durability::Durable,
                crdt: None,
            }
        }
    }

    impl From<&CommandContext> for wit::Context {
        fn from(c: &CommandContext) -> Self {
            wit::Context {
                entity_type: c.entity_type.clone(),
                key: c.key.clone(),
                command_id: c.command_id.clone(),
                command: c.command.clone(),
                timestamp_ms: c.timestamp_ms,
                random_seed: c.random_seed,
                sequence: c.sequence,
            }
        }
    }

    impl From<wit::Call> for Call {
        fn from(c: wit::Call) -> Self {
            Call {
                entity_type: c.target.entity_type,
                key: c.target.key,
                command: c.command,
                payload: c.payload,
                reply_to: None,
            }
        }
    }

    impl From<wit::Effect> for Effect {
        fn from(e: wit::Effect) -> Self {
            match e {
                wit::Effect::Call(c) => Effect::Call(c.into()),
                wit::Effect::Publish(p) => Effect::Publish {
                    topic: p.topic,
                    payload: p.payload,
                },
                wit::Effect::Schedule(t) => Effect::Schedule {
                    name: t.name,
                    delay_ms: t.delay_ms,
                    command: t.command,
                    payload: t.payload,
                    every_ms: None,
                },
            }
        }
    }
}

/// `cella:entity@0.2.0`.
mod v02 {
    use super::*;
    use crate::{
        Consistency, CrdtAction, CrdtOp, CrdtType, Durability, ReplyRoute, SubscriberKey,
        Subscription, TopicMessage, bindings::v02::cella::entity::types as wit,
    };

    shared_conversions!();

    fn crdt_type(t: wit::CrdtType) -> CrdtType {
        match t {
            wit::CrdtType::GCounter => CrdtType::GCounter,
            wit::CrdtType::PnCounter => CrdtType::PnCounter,
            wit::CrdtType::GSet => CrdtType::GSet,
            wit::CrdtType::OrSet => CrdtType::OrSet,
            wit::CrdtType::LwwRegister => CrdtType::LwwRegister,
            wit::CrdtType::Flag => CrdtType::Flag,
            wit::CrdtType::OrMap => CrdtType::OrMap,
            wit::CrdtType::Vote => CrdtType::Vote,
        }
    }

    impl From<wit::CrdtOp> for CrdtOp {
        fn from(op: wit::CrdtOp) -> Self {
            CrdtOp {
                path: op.path,
                action: match op.action {
                    wit::CrdtAction::Increment(n) => CrdtAction::Increment(n),
                    wit::CrdtAction::Decrement(n) => CrdtAction::Decrement(n),
                    wit::CrdtAction::Add(v) => CrdtAction::Add(v),
                    wit::CrdtAction::Remove(v) => CrdtAction::Remove(v),
                    wit::CrdtAction::Set(v) => CrdtAction::Set(v),
                    wit::CrdtAction::Enable => CrdtAction::Enable,
                    wit::CrdtAction::Disable => CrdtAction::Disable,
                    wit::CrdtAction::Vote(b) => CrdtAction::Vote(b),
                    wit::CrdtAction::Delete(k) => CrdtAction::Delete(k),
                    wit::CrdtAction::Clear => CrdtAction::Clear,
                },
                creates: op.creates.map(crdt_type),
            }
        }
    }

    impl From<wit::Outcome> for Outcome {
        fn from(o: wit::Outcome) -> Self {
            Outcome {
                events: o.events,
                state: o.state,
                reply: o.reply,
                forward: o.forward.map(Call::from),
                effects: o.effects.into_iter().map(Effect::from).collect(),
                crdt_ops: o.crdt_ops.into_iter().map(CrdtOp::from).collect(),
                consistency: match o.consistency {
                    wit::Consistency::Local => Consistency::Local,
                    wit::Consistency::Majority => Consistency::Majority,
                    wit::Consistency::All => Consistency::All,
                },
            }
        }
    }

    impl From<wit::Descriptor> for Descriptor {
        fn from(d: wit::Descriptor) -> Self {
            Descriptor {
                kind: match d.kind {
                    wit::EntityKind::Value => cella_core::EntityKind::Value,
                    wit::EntityKind::EventSourced => cella_core::EntityKind::EventSourced,
                    wit::EntityKind::Crdt => cella_core::EntityKind::Crdt,
                },
                durability: match d.durability {
                    wit::Durability::Durable => Durability::Durable,
                    wit::Durability::Ephemeral => Durability::Ephemeral,
                },
                crdt: d.crdt.map(crdt_type),
                commands: d.commands,
                snapshot_every: d.snapshot_every,
                subscriptions: d
                    .subscriptions
                    .into_iter()
                    .map(|s| Subscription {
                        topic: s.topic,
                        command: s.command,
                        key: match s.key {
                            wit::SubscriberKey::Pointer(p) => SubscriberKey::Pointer(p),
                            wit::SubscriberKey::Fixed(k) => SubscriberKey::Fixed(k),
                        },
                    })
                    .collect(),
                events_topic: d.events_topic,
            }
        }
    }

    impl From<&CommandContext> for wit::Context {
        fn from(c: &CommandContext) -> Self {
            wit::Context {
                entity_type: c.entity_type.clone(),
                key: c.key.clone(),
                command_id: c.command_id.clone(),
                command: c.command.clone(),
                timestamp_ms: c.timestamp_ms,
                random_seed: c.random_seed,
                sequence: c.sequence,
                correlation: c.correlation.clone(),
                timer: c.timer.clone(),
                message: c
                    .message
                    .as_ref()
                    .map(|m: &TopicMessage| wit::TopicMessage {
                        topic: m.topic.clone(),
                        offset: m.offset,
                    }),
            }
        }
    }

    impl From<wit::Call> for Call {
        fn from(c: wit::Call) -> Self {
            Call {
                entity_type: c.target.entity_type,
                key: c.target.key,
                command: c.command,
                payload: c.payload,
                reply_to: c.reply_to.map(|r| ReplyRoute {
                    command: r.command,
                    correlation: r.correlation,
                }),
            }
        }
    }

    impl From<wit::Effect> for Effect {
        fn from(e: wit::Effect) -> Self {
            match e {
                wit::Effect::Call(c) => Effect::Call(c.into()),
                wit::Effect::Publish(p) => Effect::Publish {
                    topic: p.topic,
                    payload: p.payload,
                },
                wit::Effect::Schedule(t) => Effect::Schedule {
                    name: t.name,
                    delay_ms: t.delay_ms,
                    command: t.command,
                    payload: t.payload,
                    every_ms: t.every_ms,
                },
                wit::Effect::Cancel(name) => Effect::Cancel { name },
                wit::Effect::Broadcast(b) => Effect::Broadcast {
                    entity_type: b.entity_type,
                    command: b.command,
                    payload: b.payload,
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ReplyRoute, TopicMessage,
        bindings::{v01::cella::entity::types as w1, v02::cella::entity::types as w2},
    };

    fn ctx() -> CommandContext {
        CommandContext {
            entity_type: "cart".into(),
            key: "k".into(),
            command_id: "c1".into(),
            command: "add".into(),
            timestamp_ms: 1,
            random_seed: 2,
            sequence: 3,
            correlation: Some("corr".into()),
            timer: Some("tick".into()),
            message: Some(TopicMessage {
                topic: "news".into(),
                offset: 9,
            }),
        }
    }

    #[test]
    fn converts_a_0_2_outcome() {
        let call = |reply_to| w2::Call {
            target: w2::Address {
                entity_type: "cart".into(),
                key: "k".into(),
            },
            command: "add".into(),
            payload: "1".into(),
            reply_to,
        };
        let o = Outcome::from(w2::Outcome {
            events: vec![b"e".to_vec()],
            state: Some(b"s".to_vec()),
            reply: "{}".into(),
            forward: Some(call(None)),
            effects: vec![
                w2::Effect::Publish(w2::Publication {
                    topic: "t".into(),
                    payload: "p".into(),
                }),
                w2::Effect::Schedule(w2::Timer {
                    name: "n".into(),
                    delay_ms: 5,
                    command: "c".into(),
                    payload: "null".into(),
                    every_ms: Some(60),
                }),
                w2::Effect::Cancel("n".into()),
                w2::Effect::Broadcast(w2::Broadcast {
                    entity_type: "cart".into(),
                    command: "ping".into(),
                    payload: "{}".into(),
                }),
                w2::Effect::Call(call(Some(w2::ReplyRoute {
                    command: "added".into(),
                    correlation: "x".into(),
                }))),
            ],
            crdt_ops: vec![w2::CrdtOp {
                path: vec!["m".into()],
                action: w2::CrdtAction::Increment(2),
                creates: Some(w2::CrdtType::GCounter),
            }],
            consistency: w2::Consistency::Majority,
        });
        assert_eq!(
            o.crdt_ops,
            vec![crate::CrdtOp {
                path: vec!["m".into()],
                action: crate::CrdtAction::Increment(2),
                creates: Some(crate::CrdtType::GCounter),
            }]
        );
        assert_eq!(o.consistency, crate::Consistency::Majority);
        assert_eq!(o.forward.as_ref().unwrap().entity_type, "cart");
        assert_eq!(o.forward.as_ref().unwrap().reply_to, None);
        assert_eq!(
            o.effects[0],
            Effect::Publish {
                topic: "t".into(),
                payload: "p".into()
            }
        );
        assert!(matches!(
            o.effects[1],
            Effect::Schedule {
                delay_ms: 5,
                every_ms: Some(60),
                ..
            }
        ));
        assert_eq!(o.effects[2], Effect::Cancel { name: "n".into() });
        assert!(
            matches!(&o.effects[3], Effect::Broadcast { entity_type, .. } if entity_type == "cart")
        );
        let Effect::Call(c) = &o.effects[4] else {
            panic!("{:?}", o.effects[4])
        };
        assert_eq!(
            c.reply_to,
            Some(ReplyRoute {
                command: "added".into(),
                correlation: "x".into()
            })
        );
    }

    #[test]
    fn converts_a_0_1_outcome() {
        let o = Outcome::from(w1::Outcome {
            events: vec![],
            state: None,
            reply: "1".into(),
            forward: None,
            effects: vec![
                w1::Effect::Schedule(w1::Timer {
                    name: "n".into(),
                    delay_ms: 5,
                    command: "c".into(),
                    payload: "null".into(),
                }),
                w1::Effect::Call(w1::Call {
                    target: w1::Address {
                        entity_type: "cart".into(),
                        key: "k".into(),
                    },
                    command: "add".into(),
                    payload: "1".into(),
                }),
            ],
        });
        assert_eq!(
            o.effects[0],
            Effect::Schedule {
                name: "n".into(),
                delay_ms: 5,
                command: "c".into(),
                payload: "null".into(),
                every_ms: None,
            }
        );
        assert!(matches!(&o.effects[1], Effect::Call(c) if c.reply_to.is_none()));
    }

    #[test]
    fn contexts_carry_what_each_contract_has() {
        let c = ctx();
        let new = w2::Context::from(&c);
        assert_eq!(new.correlation.as_deref(), Some("corr"));
        assert_eq!(new.timer.as_deref(), Some("tick"));
        assert_eq!(
            new.message.map(|m| (m.topic, m.offset)),
            Some(("news".into(), 9))
        );
        let old = w1::Context::from(&c);
        assert_eq!((old.sequence, old.command.as_str()), (3, "add"));
    }
}
