//! Fuzz target: the hostkey loader, `voidmesh_net::Identity::from_pkcs8_pem`, on arbitrary
//! UTF-8 text. A key it accepts must survive `to_pkcs8_pem` and load again as the same
//! key; the same check replays the corpus in `crates/node/tests/fuzz_corpus_config.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voidmesh_net::Identity;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(identity) = Identity::from_pkcs8_pem(text) {
        let again = Identity::from_pkcs8_pem(&identity.to_pkcs8_pem())
            .expect("a written hostkey loads again");
        assert_eq!(again.node_id(), identity.node_id());
        assert_eq!(
            again.signing_key().to_bytes(),
            identity.signing_key().to_bytes()
        );
    }
});
