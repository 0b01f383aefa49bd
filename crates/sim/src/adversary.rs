//! Adversarial nodes: how they answer requests.
//!
//! An adversary joins and looks things up like any node (its own Kademlia runs
//! unchanged), but the simulator never hands it a request: it fabricates the answer here
//! instead of calling `handle_request`. The behaviours are the attacks the hardening work
//! has to withstand.

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::Rng;
use voidmesh_proto::{Contact, KadMessage, Key, Version};

use crate::network::unreachable_addr;

/// What an adversarial node does with the requests it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Behaviour {
    /// Never answers anything: every request to it times out.
    DropAll,
    /// Answers FIND_NODE / FIND_VALUE with real, live contacts that are far from the
    /// target (the opposite half of the id space), and never admits to holding a value;
    /// claims to store every STORE without keeping it.
    FarContacts,
    /// Answers FIND_NODE / FIND_VALUE with made-up contacts: uniformly random ids at
    /// addresses where nobody listens; claims to store every STORE without keeping it.
    FakeContacts,
    /// Like `fake-contacts`, but the made-up ids share a 64-bit prefix with the target, so
    /// they look closer than any real node (an eclipse attempt).
    FakeNearContacts,
    /// Answers FIND_VALUE with a random value under the highest version; everything else
    /// honestly.
    WrongValues,
}

impl Behaviour {
    /// The name used on the command line and in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::DropAll => "drop-all",
            Behaviour::FarContacts => "far-contacts",
            Behaviour::FakeContacts => "fake-contacts",
            Behaviour::FakeNearContacts => "fake-near-contacts",
            Behaviour::WrongValues => "wrong-values",
        }
    }

    /// Parses a [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Behaviour> {
        [
            Behaviour::DropAll,
            Behaviour::FarContacts,
            Behaviour::FakeContacts,
            Behaviour::FakeNearContacts,
            Behaviour::WrongValues,
        ]
        .into_iter()
        .find(|b| b.name() == name.trim())
    }
}

/// What an adversary does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Let the node's own state machine answer.
    Honest,
    /// Say nothing; the requester's transport times out.
    Silent,
    /// Send this fabricated reply.
    Reply(KadMessage),
}

/// How an adversary answers `request`.
///
/// `k` is the number of contacts a reply carries; `live_contact` draws a random live node
/// (used for far-away contacts).
pub fn answer(
    behaviour: Behaviour,
    request: &KadMessage,
    k: usize,
    rng: &mut StdRng,
    live_contact: &mut dyn FnMut(&mut StdRng) -> Option<Contact>,
) -> Answer {
    let target = match request {
        KadMessage::FindNode { target } => Some(*target),
        KadMessage::FindValue { key } => Some(*key),
        _ => None,
    };
    let value_lookup = matches!(request, KadMessage::FindValue { .. });
    match behaviour {
        Behaviour::DropAll => Answer::Silent,
        Behaviour::WrongValues => {
            if value_lookup {
                let len = rng.gen_range(16..64);
                let value: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                Answer::Reply(KadMessage::FoundValue {
                    value: Bytes::from(value),
                    ttl_ms: 3_600_000,
                    version: Version(u64::MAX),
                })
            } else {
                Answer::Honest
            }
        }
        Behaviour::FarContacts | Behaviour::FakeContacts | Behaviour::FakeNearContacts => {
            match (request, target) {
                (_, Some(target)) => {
                    let contacts = match behaviour {
                        Behaviour::FarContacts => far_contacts(&target, k, rng, live_contact),
                        Behaviour::FakeNearContacts => fake_contacts(Some(&target), k, rng),
                        _ => fake_contacts(None, k, rng),
                    };
                    Answer::Reply(if value_lookup {
                        KadMessage::ValueNotFound { contacts }
                    } else {
                        KadMessage::FindNodeReply { contacts }
                    })
                }
                (KadMessage::Store { key, .. }, None) => Answer::Reply(KadMessage::StoreReply {
                    key: *key,
                    stored: true,
                }),
                _ => Answer::Honest,
            }
        }
    }
}

/// Up to `k` distinct live contacts whose distance to `target` has its top bit set.
fn far_contacts(
    target: &Key,
    k: usize,
    rng: &mut StdRng,
    live_contact: &mut dyn FnMut(&mut StdRng) -> Option<Contact>,
) -> Vec<Contact> {
    let mut out: Vec<Contact> = Vec::with_capacity(k);
    for _ in 0..k * 8 {
        if out.len() >= k {
            break;
        }
        let Some(c) = live_contact(rng) else { break };
        let far = (c.id.0[0] ^ target.0[0]) & 0x80 != 0;
        if far && !out.iter().any(|o| o.id == c.id) {
            out.push(c);
        }
    }
    out
}

/// `k` made-up contacts at unreachable addresses: random ids, or ids sharing a 64-bit
/// prefix with `near`.
fn fake_contacts(near: Option<&Key>, k: usize, rng: &mut StdRng) -> Vec<Contact> {
    (0..k)
        .map(|_| {
            let mut id: [u8; 32] = rng.gen();
            if let Some(target) = near {
                id[..8].copy_from_slice(&target.0[..8]);
            }
            Contact::unkeyed(Key(id), unreachable_addr(rng))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::{addr_of, index_of};
    use rand::SeedableRng;

    fn live(rng: &mut StdRng) -> Option<Contact> {
        let i: u32 = rng.gen_range(0..1000);
        Some(Contact::unkeyed(Key(rng.gen()), addr_of(i)))
    }

    #[test]
    fn names_round_trip() {
        for b in [
            Behaviour::DropAll,
            Behaviour::FarContacts,
            Behaviour::FakeContacts,
            Behaviour::FakeNearContacts,
            Behaviour::WrongValues,
        ] {
            assert_eq!(Behaviour::from_name(b.name()), Some(b));
        }
        assert_eq!(Behaviour::from_name("nice"), None);
    }

    #[test]
    fn drop_all_is_silent() {
        let mut rng = StdRng::seed_from_u64(1);
        let req = KadMessage::Ping;
        assert_eq!(
            answer(Behaviour::DropAll, &req, 20, &mut rng, &mut live),
            Answer::Silent
        );
    }

    #[test]
    fn far_contacts_are_in_the_other_half() {
        let mut rng = StdRng::seed_from_u64(1);
        let target = Key([0x12; 32]);
        let req = KadMessage::FindNode { target };
        let Answer::Reply(KadMessage::FindNodeReply { contacts }) =
            answer(Behaviour::FarContacts, &req, 20, &mut rng, &mut live)
        else {
            panic!("expected a FIND_NODE reply");
        };
        assert_eq!(contacts.len(), 20);
        assert!(contacts.iter().all(|c| (c.id.0[0] ^ 0x12) & 0x80 != 0));
    }

    #[test]
    fn fake_contacts_look_close_but_are_unreachable() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = Key([0x34; 32]);
        let req = KadMessage::FindValue { key };
        let Answer::Reply(KadMessage::ValueNotFound { contacts }) =
            answer(Behaviour::FakeNearContacts, &req, 20, &mut rng, &mut live)
        else {
            panic!("expected a FIND_VALUE reply");
        };
        assert_eq!(contacts.len(), 20);
        for c in contacts {
            assert_eq!(c.id.0[..8], key.0[..8]);
            assert_eq!(index_of(&c.addr), None);
        }
    }

    #[test]
    fn fake_contacts_are_random_and_unreachable() {
        let mut rng = StdRng::seed_from_u64(1);
        let target = Key([0x34; 32]);
        let req = KadMessage::FindNode { target };
        let Answer::Reply(KadMessage::FindNodeReply { contacts }) =
            answer(Behaviour::FakeContacts, &req, 20, &mut rng, &mut live)
        else {
            panic!("expected a FIND_NODE reply");
        };
        assert_eq!(contacts.len(), 20);
        assert!(contacts.iter().all(|c| index_of(&c.addr).is_none()));
        assert!(contacts.iter().filter(|c| c.id.0[0] == 0x34).count() < 5);
    }

    #[test]
    fn wrong_values_lie_only_about_values() {
        let mut rng = StdRng::seed_from_u64(1);
        let key = Key([1; 32]);
        let got = answer(
            Behaviour::WrongValues,
            &KadMessage::FindValue { key },
            20,
            &mut rng,
            &mut live,
        );
        assert!(matches!(got, Answer::Reply(KadMessage::FoundValue { .. })));
        let got = answer(
            Behaviour::WrongValues,
            &KadMessage::FindNode { target: key },
            20,
            &mut rng,
            &mut live,
        );
        assert_eq!(got, Answer::Honest);
    }
}
