//! Hostkey generation, PEM round trips, node ids and file errors.

use sha2::{Digest, Sha256};
use std::path::PathBuf;
use voidmesh_net::{node_id_from_public_key, node_id_from_spki, Identity, IdentityError};

/// A fresh empty directory under the system temp dir.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "voidmesh-net-{name}-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn pem_round_trip_keeps_the_key_and_id() {
    let id = Identity::generate();
    let pem = id.to_pkcs8_pem();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    let back = Identity::from_pkcs8_pem(&pem).unwrap();
    assert_eq!(back.node_id(), id.node_id());
    assert_eq!(back.signing_key().to_bytes(), id.signing_key().to_bytes());
}

#[test]
fn node_id_is_sha256_of_the_44_byte_spki() {
    let id = Identity::generate();
    let spki = id.public_key_der();
    assert_eq!(spki.len(), 44);
    let digest: [u8; 32] = Sha256::digest(spki).into();
    assert_eq!(id.node_id().0, digest);
    assert_eq!(node_id_from_spki(spki), id.node_id());
    assert_eq!(node_id_from_public_key(&id.verifying_key()), id.node_id());
}

#[test]
fn generated_keys_differ() {
    assert_ne!(
        Identity::generate().node_id(),
        Identity::generate().node_id()
    );
}

#[test]
fn openssl_style_pkcs8_v1_key_is_accepted() {
    // `openssl genpkey -algorithm ed25519` output (PKCS#8 v1, no public key inside).
    let pem = "-----BEGIN PRIVATE KEY-----\n\
               MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
               -----END PRIVATE KEY-----\n";
    let id = Identity::from_pkcs8_pem(pem).unwrap();
    // The public key of this example key in RFC 8410, section 10.
    assert_eq!(id.verifying_key().as_bytes()[..4], [0x19, 0xbf, 0x44, 0x09]);
}

#[test]
fn save_then_load_gives_the_same_identity_and_mode_0600() {
    let dir = temp_dir("save");
    let path = dir.join("hostkey.pem");
    let id = Identity::generate();
    id.save(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(Identity::load(&path).unwrap().node_id(), id.node_id());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn save_refuses_to_overwrite() {
    let dir = temp_dir("exists");
    let path = dir.join("hostkey.pem");
    let first = Identity::generate();
    first.save(&path).unwrap();
    let err = Identity::generate().save(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::Exists(ref p) if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("hostkey.pem"));
    assert_eq!(Identity::load(&path).unwrap().node_id(), first.node_id());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn loading_a_missing_file_names_it() {
    let path = temp_dir("missing").join("nope.pem");
    let err = Identity::load(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::Missing(ref p) if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("nope.pem"), "{err}");
}

#[test]
fn loading_garbage_says_not_pem_and_names_the_file() {
    let dir = temp_dir("garbage");
    let path = dir.join("garbage.pem");
    std::fs::write(&path, b"this is not a key\n").unwrap();
    let err = Identity::load(&path).unwrap_err();
    assert!(
        matches!(err, IdentityError::NotPem { path: Some(ref p), .. } if *p == path),
        "{err}"
    );
    assert!(err.to_string().contains("garbage.pem"), "{err}");
    std::fs::write(&path, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    assert!(matches!(
        Identity::load(&path).unwrap_err(),
        IdentityError::NotPem { .. }
    ));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_pem_that_is_not_an_ed25519_key_is_refused() {
    // A PEM block with the right label but a P-256 PKCS#8 key inside.
    let p256 = "-----BEGIN PRIVATE KEY-----\n\
                MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/Y7funOYzT4a4AiZ\n\
                3avxKCa3ejOrRWFTGsQYxBDaXyGhRANCAAQF0OY8i2HUmv7hwAUZvjNHCwqv88hq\n\
                QiL60vnwQiucGZPTfEd3Cir1JooPbdwzzyyDxPWYWY2d6P1iYQZh3rog\n\
                -----END PRIVATE KEY-----\n";
    let err = Identity::from_pkcs8_pem(p256).unwrap_err();
    assert!(
        matches!(err, IdentityError::NotEd25519 { path: None, .. }),
        "{err}"
    );

    // A PEM block of another kind.
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let err = Identity::from_pkcs8_pem(cert).unwrap_err();
    assert!(matches!(err, IdentityError::NotPem { .. }), "{err}");
}
