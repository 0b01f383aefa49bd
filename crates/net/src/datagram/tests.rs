//! Tests of the datagram codec: round trips, tampering, replay, amplification, floods.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::*;
use crate::Identity;
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// A fixed "now": 2027-01-15 in µs since the Unix epoch.
const NOW: u64 = 1_800_000_000_000_000;

fn addr(n: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, n], 4000 + u16::from(n)))
}

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn codec(n: u8) -> Codec {
    Codec::new(&key(n), [n.wrapping_add(100); 32], Config::default())
}

fn codec_with(n: u8, config: Config) -> Codec {
    Codec::new(&key(n), [n.wrapping_add(100); 32], config)
}

fn public(n: u8) -> PeerKey {
    PeerKey::from_bytes(&key(n).verifying_key().to_bytes()).unwrap()
}

/// A request from `a` to `b` opened by `b`.
fn request(a: &mut Codec, b: &mut Codec, payload: &[u8]) -> (SealedRequest, Opened) {
    let sealed = a.seal_request(NOW, &b.local().clone(), payload, 0).unwrap();
    let opened = b.open(NOW, addr(1), &sealed.datagram).unwrap();
    (sealed, opened)
}

#[test]
fn round_trip_first_contact_with_only_the_public_key() {
    let mut a = codec(1);
    let mut b = codec(2);
    // a knows only b's 32-byte public key, as a FIND_NODE reply would carry it.
    let b_pub = PeerKey::from_bytes(&key(2).verifying_key().to_bytes()).unwrap();
    let req = a
        .seal_request(NOW, &b_pub, b"\x00\x00\x00\x0a\x02\x94ping", 0)
        .unwrap();
    assert_eq!(req.datagram[0], KIND_REQUEST);
    assert_eq!(req.datagram.len(), REQUEST_OVERHEAD + 10);
    let opened = b.open(NOW + 500, addr(1), &req.datagram).unwrap();
    assert_eq!(opened.kind, Kind::Request);
    assert_eq!(opened.request_id, req.request_id);
    assert_eq!(opened.payload, b"\x00\x00\x00\x0a\x02\x94ping");
    assert_eq!(
        opened.peer.node_id(),
        Identity::from_signing_key(key(1)).node_id()
    );
    assert!(!opened.address_validated);

    let reply = b
        .seal_reply(NOW + 600, opened.reply_to.as_ref().unwrap(), b"pong")
        .unwrap();
    assert_eq!(reply.kind, Kind::Reply);
    assert_eq!(reply.datagram.len(), REPLY_OVERHEAD + TOKEN_LEN + 4);
    let got = a.open(NOW + 900, addr(2), &reply.datagram).unwrap();
    assert_eq!(got.kind, Kind::Reply);
    assert_eq!(got.request_id, req.request_id);
    assert_eq!(got.payload, b"pong");
    assert_eq!(
        got.peer.node_id(),
        Identity::from_signing_key(key(2)).node_id()
    );
    assert_eq!(a.outstanding(), 0);

    // The second request carries b's token: validated, and a large reply may go.
    let req2 = a.seal_request(NOW + 1000, &b_pub, b"find", 0).unwrap();
    assert_eq!(req2.datagram.len(), REQUEST_OVERHEAD + TOKEN_LEN + 4);
    let opened2 = b.open(NOW + 1100, addr(1), &req2.datagram).unwrap();
    assert!(opened2.address_validated);
    let big = vec![7u8; 1000];
    let reply2 = b
        .seal_reply(NOW + 1200, opened2.reply_to.as_ref().unwrap(), &big)
        .unwrap();
    assert_eq!(reply2.kind, Kind::Reply);
    assert_eq!(reply2.datagram.len(), REPLY_OVERHEAD + 1000);
    assert_eq!(
        a.open(NOW + 1300, addr(2), &reply2.datagram)
            .unwrap()
            .payload,
        big
    );
}

#[test]
fn largest_payloads_fit_1200_bytes() {
    let mut a = codec(1);
    let mut b = codec(2);
    // Get a token first so the request carries one (the largest header).
    let (_, o) = request(&mut a, &mut b, b"x");
    let r = b
        .seal_reply(NOW, o.reply_to.as_ref().unwrap(), b"y")
        .unwrap();
    a.open(NOW, addr(2), &r.datagram).unwrap();
    let b_pub = b.local().clone();
    let req = a
        .seal_request(NOW + 1, &b_pub, &[1; MAX_REQUEST_PAYLOAD], 0)
        .unwrap();
    assert_eq!(req.datagram.len(), DEFAULT_MAX_DATAGRAM);
    assert!(matches!(
        a.seal_request(NOW + 2, &b_pub, &[1; MAX_REQUEST_PAYLOAD + 1], 0),
        Err(DatagramError::TooLarge { .. })
    ));
    let o = b.open(NOW + 3, addr(1), &req.datagram).unwrap();
    assert!(o.address_validated);
    let r = b
        .seal_reply(
            NOW + 4,
            o.reply_to.as_ref().unwrap(),
            &[2; MAX_REPLY_PAYLOAD + TOKEN_LEN],
        )
        .unwrap();
    assert_eq!(r.datagram.len(), DEFAULT_MAX_DATAGRAM);
}

#[test]
fn wrong_receiver_cannot_open() {
    let mut a = codec(1);
    let mut c = codec(3);
    let req = a.seal_request(NOW, &public(2), b"for b", 0).unwrap();
    assert_eq!(
        c.open(NOW, addr(1), &req.datagram).unwrap_err(),
        DatagramError::Unauthenticated
    );
    assert_eq!(c.peer_count(), 0, "a failed datagram leaves no state");
}

#[test]
fn every_flipped_bit_and_every_truncation_is_refused() {
    let mut a = codec(1);
    let mut b = codec(2);
    let req = a.seal_request(NOW, &public(2), b"payload!", 0).unwrap();
    for i in 0..req.datagram.len() * 8 {
        let mut d = req.datagram.clone();
        d[i / 8] ^= 1 << (i % 8);
        assert!(b.open(NOW, addr(1), &d).is_err(), "bit {i} of a request");
    }
    for len in 0..req.datagram.len() {
        assert!(b.open(NOW, addr(1), &req.datagram[..len]).is_err());
    }
    let opened = b.open(NOW, addr(1), &req.datagram).unwrap();
    let reply = b
        .seal_reply(NOW, opened.reply_to.as_ref().unwrap(), b"answer")
        .unwrap();
    for i in 0..reply.datagram.len() * 8 {
        let mut d = reply.datagram.clone();
        d[i / 8] ^= 1 << (i % 8);
        assert!(a.open(NOW, addr(2), &d).is_err(), "bit {i} of a reply");
    }
    for len in 0..reply.datagram.len() {
        assert!(a.open(NOW, addr(2), &reply.datagram[..len]).is_err());
    }
    // Forgeries did not cancel the request: the real reply still opens, once.
    assert_eq!(
        a.open(NOW, addr(2), &reply.datagram).unwrap().payload,
        b"answer"
    );
    assert_eq!(
        a.open(NOW, addr(2), &reply.datagram).unwrap_err(),
        DatagramError::UnknownRequest
    );
}

#[test]
fn first_byte_never_looks_like_quic() {
    let mut a = codec(1);
    let mut b = codec(2);
    let (req, o) = request(&mut a, &mut b, b"x");
    let reply = b
        .seal_reply(NOW, o.reply_to.as_ref().unwrap(), &[0; 500])
        .unwrap();
    assert_eq!(reply.kind, Kind::Retry);
    for d in [&req.datagram, &reply.datagram] {
        assert_eq!(d[0] & QUIC_FIXED_BIT, 0);
        assert!(is_overlay_datagram(d));
    }
    assert!(!is_overlay_datagram(&[0x40, 1, 2]));
    assert!(!is_overlay_datagram(&[]));
    assert_eq!(
        b.open(NOW, addr(1), &[0xc0, 0, 0, 0, 1]).unwrap_err(),
        DatagramError::NotDatagram
    );
    assert_eq!(
        b.open(NOW, addr(1), &[0x14; 100]).unwrap_err(),
        DatagramError::UnknownKind(0x14)
    );
}

#[test]
fn a_datagram_claiming_another_node_id_fails() {
    let mut a = codec(1);
    let mut b = codec(2);
    let req = a.seal_request(NOW, &public(2), b"hello", 0).unwrap();
    // Sender key replaced by node 3's key.
    let mut d = req.datagram.clone();
    d[1..33].copy_from_slice(&key(3).verifying_key().to_bytes());
    assert_eq!(
        b.open(NOW, addr(1), &d).unwrap_err(),
        DatagramError::Unauthenticated
    );
    // Sender key replaced by -A (sign bit flipped): the same X25519 key, another node id.
    // The pair keys bind the Ed25519 bytes, so it fails.
    let mut d = req.datagram.clone();
    d[32] ^= 0x80;
    assert!(b.open(NOW, addr(1), &d).is_err());
    // Our own key as sender.
    let mut d = req.datagram.clone();
    d[1..33].copy_from_slice(&key(2).verifying_key().to_bytes());
    assert_eq!(
        b.open(NOW, addr(1), &d).unwrap_err(),
        DatagramError::FromSelf
    );
    // A weak (small-order) key: the identity point.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    assert_eq!(
        PeerKey::from_bytes(&weak).unwrap_err(),
        DatagramError::BadPublicKey
    );
    let mut d = req.datagram.clone();
    d[1..33].copy_from_slice(&weak);
    assert_eq!(
        b.open(NOW, addr(1), &d).unwrap_err(),
        DatagramError::BadPublicKey
    );
    assert_eq!(b.peer_count(), 0);
    // The real one still opens.
    assert!(b.open(NOW, addr(1), &req.datagram).is_ok());
}

#[test]
fn replayed_request_is_refused_and_stale_or_future_ones_too() {
    let mut a = codec(1);
    let mut b = codec(2);
    let (req, _) = request(&mut a, &mut b, b"store");
    assert_eq!(
        b.open(NOW + 10, addr(1), &req.datagram).unwrap_err(),
        DatagramError::Replayed
    );
    // From another source address too.
    assert_eq!(
        b.open(NOW + 10, addr(9), &req.datagram).unwrap_err(),
        DatagramError::Replayed
    );
    // Old beyond the freshness window.
    let old = codec(4)
        .seal_request(NOW - 61_000_000, &public(2), b"x", 0)
        .unwrap();
    assert!(matches!(
        b.open(NOW, addr(4), &old.datagram).unwrap_err(),
        DatagramError::Stale { .. }
    ));
    // A sender whose clock is 2 minutes ahead.
    let mut c = codec(3);
    let fut = c
        .seal_request(NOW + 120_000_000, &public(2), b"x", 0)
        .unwrap();
    assert!(matches!(
        b.open(NOW, addr(3), &fut.datagram).unwrap_err(),
        DatagramError::FromFuture { .. }
    ));
}

#[test]
fn reordering_within_the_window_is_accepted() {
    let mut a = codec(1);
    let mut b = codec(2);
    let reqs: Vec<_> = (0..REPLAY_WINDOW as u64)
        .map(|i| a.seal_request(NOW + i, &public(2), b"x", 0).unwrap())
        .collect();
    for r in reqs.iter().rev() {
        b.open(NOW + 100, addr(1), &r.datagram).unwrap();
    }
    for r in &reqs {
        assert_eq!(
            b.open(NOW + 100, addr(1), &r.datagram).unwrap_err(),
            DatagramError::Replayed
        );
    }
    // A window full of newer counters refuses an older, never-seen one.
    let late = a.seal_request(NOW + 50, &public(2), b"x", 0).unwrap();
    let newer: Vec<_> = (0..REPLAY_WINDOW as u64)
        .map(|_| a.seal_request(NOW + 60, &public(2), b"x", 0).unwrap())
        .collect();
    for r in &newer {
        b.open(NOW + 100, addr(1), &r.datagram).unwrap();
    }
    assert_eq!(
        b.open(NOW + 100, addr(1), &late.datagram).unwrap_err(),
        DatagramError::Replayed
    );
}

/// What the design guarantees after eviction: a request is accepted at most once while
/// its sender is cached, and never outside the freshness window; a replay within the
/// window after the sender was evicted is accepted once more (then refused again).
/// A protected sender is not evicted by unprotected churn, so its replays stay refused.
#[test]
fn replay_after_eviction() {
    let config = Config {
        max_peers: 2,
        ..Config::default()
    };
    let mut a = codec(1);
    let mut b = codec_with(2, config);
    let (req, _) = request(&mut a, &mut b, b"store");
    for n in 3..6 {
        let mut c = codec(n);
        request(&mut c, &mut b, b"evict");
    }
    assert!(!b.is_cached(&public(1)));
    // Within the freshness window: accepted once more, then refused.
    assert!(b.open(NOW + 1_000_000, addr(1), &req.datagram).is_ok());
    assert_eq!(
        b.open(NOW + 1_000_000, addr(1), &req.datagram).unwrap_err(),
        DatagramError::Replayed
    );
    // After the window: refused whatever the cache holds.
    for n in 3..6 {
        let mut c = codec(n);
        let r = c
            .seal_request(NOW + 61_000_000, &public(2), b"x", 0)
            .unwrap();
        b.open(NOW + 61_000_000, addr(n), &r.datagram).unwrap();
    }
    assert!(!b.is_cached(&public(1)));
    assert!(matches!(
        b.open(NOW + 61_000_000, addr(1), &req.datagram)
            .unwrap_err(),
        DatagramError::Stale { .. }
    ));

    // A protected sender keeps its window.
    let mut b = codec_with(
        2,
        Config {
            max_peers: 2,
            ..Config::default()
        },
    );
    b.set_protected(&public(1), true).unwrap();
    let (req, _) = request(&mut a, &mut b, b"store");
    for n in 3..10 {
        let mut c = codec(n);
        request(&mut c, &mut b, b"evict");
    }
    assert!(b.is_cached(&public(1)));
    assert_eq!(
        b.open(NOW + 1_000_000, addr(1), &req.datagram).unwrap_err(),
        DatagramError::Replayed
    );
}

#[test]
fn replies_must_answer_an_outstanding_request() {
    let mut a = codec(1);
    let mut b = codec(2);
    let (req, opened) = request(&mut a, &mut b, b"q");
    let reply = b
        .seal_reply(NOW, opened.reply_to.as_ref().unwrap(), b"r")
        .unwrap();
    // Another request id in the header: not outstanding.
    let mut d = reply.datagram.clone();
    d[1..9].copy_from_slice(&(req.request_id ^ 1).to_be_bytes());
    assert_eq!(
        a.open(NOW, addr(2), &d).unwrap_err(),
        DatagramError::UnknownRequest
    );
    // Forgotten by the caller.
    assert!(a.forget_request(req.request_id));
    assert_eq!(
        a.open(NOW, addr(2), &reply.datagram).unwrap_err(),
        DatagramError::UnknownRequest
    );
    // Expired.
    let (req2, opened2) = request(&mut a, &mut b, b"q2");
    let reply2 = b
        .seal_reply(NOW, opened2.reply_to.as_ref().unwrap(), b"r2")
        .unwrap();
    a.expire(NOW + 10_000_001);
    assert_eq!(a.outstanding(), 0);
    assert_eq!(
        a.open(NOW + 10_000_001, addr(2), &reply2.datagram)
            .unwrap_err(),
        DatagramError::UnknownRequest
    );
    // A third party cannot answer our request to b: only b (or we) hold the key.
    let (req3, _) = request(&mut a, &mut b, b"q3");
    let mut c = codec(3);
    let (_, c_opened) = {
        let s = a.seal_request(NOW, &public(3), b"to c", 0).unwrap();
        let o = c.open(NOW, addr(1), &s.datagram).unwrap();
        (s, o)
    };
    let mut fake_to = c_opened.reply_to.clone().unwrap();
    fake_to.request_id = req3.request_id;
    let fake = c.seal_reply(NOW, &fake_to, b"forged").unwrap();
    assert_eq!(
        a.open(NOW, addr(3), &fake.datagram).unwrap_err(),
        DatagramError::Unauthenticated
    );
    assert_eq!(a.outstanding(), 2);
    let _ = req2;
}

#[test]
fn no_amplification_to_an_unvalidated_address() {
    let mut a = codec(1);
    let mut b = codec(2);
    // Small request, large answer: the unvalidated address gets a retry no larger than
    // the request.
    let (req, opened) = request(&mut a, &mut b, b"find_node");
    assert!(!opened.address_validated);
    let big = vec![9u8; 1100];
    let reply = b
        .seal_reply(NOW, opened.reply_to.as_ref().unwrap(), &big)
        .unwrap();
    assert_eq!(reply.kind, Kind::Retry);
    assert!(reply.datagram.len() <= req.datagram.len());
    assert_eq!(reply.datagram.len(), RETRY_LEN);
    let got = a.open(NOW, addr(2), &reply.datagram).unwrap();
    assert_eq!(got.kind, Kind::Retry);
    assert_eq!(got.request_id, req.request_id);
    // Sealed again with the token: validated, the large answer goes.
    let req2 = a
        .seal_request(NOW + 1, &public(2), b"find_node", 0)
        .unwrap();
    let opened2 = b.open(NOW + 1, addr(1), &req2.datagram).unwrap();
    assert!(opened2.address_validated);
    let reply2 = b
        .seal_reply(NOW + 1, opened2.reply_to.as_ref().unwrap(), &big)
        .unwrap();
    assert_eq!(reply2.kind, Kind::Reply);
    assert_eq!(
        a.open(NOW + 1, addr(2), &reply2.datagram).unwrap().payload,
        big
    );

    // A spoofed source: the token was minted for addr(1), the datagram claims addr(7).
    let req3 = a
        .seal_request(NOW + 2, &public(2), b"find_node", 0)
        .unwrap();
    let opened3 = b.open(NOW + 2, addr(7), &req3.datagram).unwrap();
    assert!(!opened3.address_validated);
    let reply3 = b
        .seal_reply(NOW + 2, opened3.reply_to.as_ref().unwrap(), &big)
        .unwrap();
    assert!(reply3.datagram.len() <= req3.datagram.len());

    // Tokens expire after two epochs.
    let late = NOW + 2 * 600_000_000 + 5;
    let mut c = codec(3);
    let (_, o) = {
        let s = c.seal_request(NOW, &public(2), b"x", 0).unwrap();
        let o = b.open(NOW, addr(3), &s.datagram).unwrap();
        (s, o)
    };
    let r = b
        .seal_reply(NOW, o.reply_to.as_ref().unwrap(), b"y")
        .unwrap();
    c.open(NOW, addr(2), &r.datagram).unwrap();
    let s = c.seal_request(late, &public(2), b"x", 0).unwrap();
    assert_eq!(
        s.datagram.len(),
        REQUEST_OVERHEAD + 1,
        "an old token is not sent"
    );
}

#[test]
fn padding_lets_a_first_contact_get_a_large_reply_at_once() {
    let mut a = codec(1);
    let mut b = codec(2);
    let big = vec![5u8; 1000];
    let req = a
        .seal_request(NOW, &public(2), b"find_node", big.len())
        .unwrap();
    assert_eq!(req.datagram.len(), REPLY_OVERHEAD + TOKEN_LEN + big.len());
    let opened = b.open(NOW, addr(1), &req.datagram).unwrap();
    assert_eq!(opened.payload, b"find_node");
    assert!(!opened.address_validated);
    let reply = b
        .seal_reply(NOW, opened.reply_to.as_ref().unwrap(), &big)
        .unwrap();
    assert_eq!(reply.kind, Kind::Reply);
    assert!(reply.datagram.len() <= req.datagram.len());
    assert_eq!(a.open(NOW, addr(2), &reply.datagram).unwrap().payload, big);
    // Padding is capped at the datagram limit.
    let mut c = codec(3);
    let req = c.seal_request(NOW, &public(2), b"x", 60_000).unwrap();
    assert_eq!(req.datagram.len(), DEFAULT_MAX_DATAGRAM);
}

/// 100 000 fresh keys each send a valid request; the cache stays at its bound and a
/// protected peer keeps being served (its replay window survives).
#[test]
fn flood_of_fresh_keys_keeps_the_cache_bounded() {
    const BOUND: usize = 512;
    let mut b = codec_with(
        2,
        Config {
            max_peers: BOUND,
            ..Config::default()
        },
    );
    let mut a = codec(1);
    b.set_protected(&public(1), true).unwrap();
    let (first, _) = request(&mut a, &mut b, b"before");
    let b_pub = b.local().clone();
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    for i in 0..100_000u64 {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        let mut attacker = Codec::new(&SigningKey::from_bytes(&secret), secret, Config::default());
        let s = attacker.seal_request(NOW + i, &b_pub, b"flood", 0).unwrap();
        b.open(NOW + i, addr(9), &s.datagram).unwrap();
        assert!(b.peer_count() <= BOUND);
        if i % 10_000 == 0 {
            let s = a.seal_request(NOW + i, &b_pub, b"still here", 0).unwrap();
            assert_eq!(
                b.open(NOW + i, addr(1), &s.datagram).unwrap().payload,
                b"still here"
            );
        }
    }
    assert_eq!(b.peer_count(), BOUND);
    assert!(b.evictions() >= 100_000 - BOUND as u64);
    assert!(b.is_cached(&public(1)));
    assert_eq!(
        b.open(NOW + 100_000, addr(1), &first.datagram).unwrap_err(),
        DatagramError::Replayed
    );
}

#[test]
fn outstanding_requests_are_bounded() {
    let mut a = codec_with(
        1,
        Config {
            max_outstanding: 3,
            ..Config::default()
        },
    );
    for i in 0..3 {
        a.seal_request(NOW + i, &public(2), b"x", 0).unwrap();
    }
    assert_eq!(
        a.seal_request(NOW + 3, &public(2), b"x", 0).unwrap_err(),
        DatagramError::TooManyOutstanding
    );
    // Once they time out, room again.
    a.seal_request(NOW + 10_000_003, &public(2), b"x", 0)
        .unwrap();
    assert_eq!(a.outstanding(), 1);
}

#[test]
fn deterministic_with_a_seed() {
    let mut a1 = codec(1);
    let mut a2 = codec(1);
    let r1 = a1.seal_request(NOW, &public(2), b"x", 0).unwrap();
    let r2 = a2.seal_request(NOW, &public(2), b"x", 0).unwrap();
    assert_eq!(r1.datagram, r2.datagram);
}

#[test]
fn fuzz_open_runs_on_samples() {
    fuzz_open(&[]);
    fuzz_open(&[0]);
    fuzz_open(&[0x11; 100]);
    fuzz_open(&[0, 0, 0, 0, 0, 1]);
    fuzz_open(&[3; 2000]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let mut b = codec(2);
        let _ = b.open(NOW, addr(1), &data);
        // Garbage with a valid kind byte too.
        for kind in [KIND_REQUEST, KIND_REPLY, KIND_RETRY] {
            let mut d = data.clone();
            if let Some(first) = d.first_mut() { *first = kind; }
            prop_assert!(b.open(NOW, addr(1), &d).is_err());
        }
        prop_assert_eq!(b.peer_count(), 0);
    }

    #[test]
    fn altered_datagrams_are_refused(
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        mask in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        fuzz_open(&mask);
        let mut a = codec(1);
        let mut b = codec(2);
        let req = a.seal_request(NOW, &public(2), &payload, 0).unwrap();
        let (d, changed) = mutate(&req.datagram, &mask);
        if changed {
            prop_assert!(b.open(NOW, addr(1), &d).is_err());
        }
        let o = b.open(NOW, addr(1), &req.datagram).unwrap();
        prop_assert_eq!(&o.payload, &payload);
    }
}

/// Release-mode figures for docs/protocol.md:
/// `cargo test -p voidmesh-net --release --lib datagram::tests::measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure() {
    use std::hint::black_box;
    use std::time::Instant;

    fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
        for _ in 0..n / 10 {
            f();
        }
        let t = Instant::now();
        for _ in 0..n {
            f();
        }
        t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
    }

    let a_keys = Keys::new(&key(1));
    let b_pub = public(2);
    println!(
        "X25519 + HKDF pair keys: {:.1} µs",
        per_op(2000, || {
            black_box(a_keys.pair_keys(black_box(&b_pub)).unwrap());
        })
    );
    println!(
        "PeerKey::from_bytes (decompress, checks, node id): {:.1} µs",
        per_op(2000, || {
            black_box(PeerKey::from_bytes(black_box(&key(2).verifying_key().to_bytes())).unwrap());
        })
    );

    for size in [200usize, 1100] {
        let payload = vec![1u8; size];
        // Warm: both cached, token held.
        let mut a = codec(1);
        let mut b = codec(2);
        let (_, o) = request(&mut a, &mut b, b"x");
        let r = b
            .seal_reply(NOW, o.reply_to.as_ref().unwrap(), b"y")
            .unwrap();
        a.open(NOW, addr(2), &r.datagram).unwrap();
        let mut t = NOW;
        let warm = per_op(20_000, || {
            t += 1;
            let s = a.seal_request(t, &b_pub, &payload, 0).unwrap();
            let o = b.open(t, addr(1), &s.datagram).unwrap();
            black_box(o);
            a.forget_request(s.request_id);
        });
        let mut t = NOW;
        let round = per_op(20_000, || {
            t += 1;
            let s = a
                .seal_request(t, &b_pub, b"0123456789012345678901234567890123456789", 0)
                .unwrap();
            let o = b.open(t, addr(1), &s.datagram).unwrap();
            let r = b
                .seal_reply(t, o.reply_to.as_ref().unwrap(), &payload)
                .unwrap();
            black_box(a.open(t, addr(2), &r.datagram).unwrap());
        });
        println!("{size} B payload: request seal+open {warm:.2} µs; request(40 B)+reply({size} B) seal+open both {round:.2} µs");
    }

    // First contact: a fresh receiver each time (sender DH + receiver decompress + DH).
    let mut n = 0u64;
    let first = per_op(1000, || {
        n += 1;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_be_bytes());
        let sk = SigningKey::from_bytes(&seed);
        let mut b = Codec::new(&sk, seed, Config::default());
        let mut a = codec(1);
        let s = a
            .seal_request(NOW, &b.local().clone(), &[1; 200], 0)
            .unwrap();
        let o = b.open(NOW, addr(1), &s.datagram).unwrap();
        let r = b
            .seal_reply(NOW, o.reply_to.as_ref().unwrap(), &[2; 200])
            .unwrap();
        black_box(a.open(NOW, addr(2), &r.datagram).unwrap());
    });
    let setup = per_op(1000, || {
        n += 1;
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&n.to_be_bytes());
        let sk = SigningKey::from_bytes(&seed);
        black_box(Codec::new(&sk, seed, Config::default()));
        black_box(codec(1));
    });
    println!("first contact request+reply (200 B each), both sides cold: {:.1} µs (of which {:.1} µs test setup: key generation and two codecs)", first, setup);

    // Noise IK with snow: handshake carrying the first request, then stateless transport.
    let params: snow::params::NoiseParams = "Noise_IK_25519_ChaChaPoly_SHA256".parse().unwrap();
    let builder = || snow::Builder::new(params.clone());
    let i_key = builder().generate_keypair().unwrap();
    let r_key = builder().generate_keypair().unwrap();
    let mut buf = vec![0u8; 2000];
    let mut out = vec![0u8; 2000];
    let hs = per_op(1000, || {
        let mut ini = builder()
            .local_private_key(&i_key.private)
            .remote_public_key(&r_key.public)
            .build_initiator()
            .unwrap();
        let mut res = builder()
            .local_private_key(&r_key.private)
            .build_responder()
            .unwrap();
        let len = ini.write_message(&[1; 200], &mut buf).unwrap();
        res.read_message(&buf[..len], &mut out).unwrap();
        let len = res.write_message(&[2; 200], &mut buf).unwrap();
        ini.read_message(&buf[..len], &mut out).unwrap();
        black_box((
            ini.into_stateless_transport_mode().unwrap(),
            res.into_stateless_transport_mode().unwrap(),
        ));
    });
    let mut ini = builder()
        .local_private_key(&i_key.private)
        .remote_public_key(&r_key.public)
        .build_initiator()
        .unwrap();
    let mut res = builder()
        .local_private_key(&r_key.private)
        .build_responder()
        .unwrap();
    let len = ini.write_message(&[1; 200], &mut buf).unwrap();
    println!(
        "Noise IK first message with 200 B: {len} bytes (overhead {})",
        len - 200
    );
    res.read_message(&buf[..len], &mut out).unwrap();
    let len = res.write_message(&[2; 200], &mut buf).unwrap();
    println!(
        "Noise IK second message with 200 B: {len} bytes (overhead {})",
        len - 200
    );
    ini.read_message(&buf[..len], &mut out).unwrap();
    let ini = ini.into_stateless_transport_mode().unwrap();
    let res = res.into_stateless_transport_mode().unwrap();
    println!("Noise IK handshake (2 messages, 200 B payloads), both sides: {hs:.1} µs");
    for size in [200usize, 1100] {
        let payload = vec![1u8; size];
        let mut nonce = 0u64;
        let t = per_op(20_000, || {
            nonce += 1;
            let len = ini.write_message(nonce, &payload, &mut buf).unwrap();
            black_box(res.read_message(nonce, &buf[..len], &mut out).unwrap());
        });
        println!("Noise transport {size} B seal+open (cached session, explicit nonce): {t:.2} µs");
    }
}
