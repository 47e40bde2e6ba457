#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;

const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";

fn key(secret: &str) -> StateKey {
    StateKey::new(&SecretString::from(secret.to_owned()))
}

/// `[app]` and `[apps.own]`, `[cloud]` and `[clouds.gov]`.
fn config() -> Config {
    let text = r#"
[app]
client_id = "11111111-1111-1111-1111-111111111111"
client_secret = { env = "S" }
[apps.own]
client_id = "22222222-2222-2222-2222-222222222222"
client_secret = { env = "S" }
[clouds.gov]
cloud = "gcc-high"
[[tenant]]
name = "a"
id = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
"#;
    let env = |_: &str| Some("secret".to_owned());
    crate::config::parse_str(text, Path::new("/nonexistent/proxy.toml"), &env).unwrap()
}

fn issued() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn signed(app: &str, cloud: &str) -> String {
    sign(&key(KEY), &Invite::new("acme", app, cloud, issued())).unwrap()
}

fn check(text: &str, now: SystemTime) -> Result<Invite, StateError> {
    verify(&key(KEY), text, now, &config())
}

#[test]
fn a_signed_state_verifies_until_it_expires() {
    let text = signed("own", "gov");
    let invite = check(&text, issued()).unwrap();
    assert_eq!(
        invite,
        Invite {
            name: "acme".into(),
            app: "own".into(),
            cloud: "gov".into(),
            expires: 1_800_000_000 + 7 * 24 * 3600,
        }
    );
    let last_second = issued() + VALIDITY - Duration::from_secs(1);
    assert!(check(&text, last_second).is_ok());
    assert_eq!(check(&text, issued() + VALIDITY), Err(StateError::Expired));
}

#[test]
fn the_state_is_compact_and_url_safe() {
    let text = signed("default", "default");
    // 1 + 8 + (1 + 4) + (1 + 7) + (1 + 7) + 32 bytes.
    assert_eq!(text.len(), 62_usize.div_ceil(3) * 4 - 1);
    assert!(text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
}

#[test]
fn every_byte_tampered_is_refused() {
    let bytes = URL_SAFE_NO_PAD.decode(signed("own", "gov")).unwrap();
    for i in 0..bytes.len() {
        for flip in [0x01, 0x80] {
            let mut tampered = bytes.clone();
            tampered[i] ^= flip;
            let result = check(&URL_SAFE_NO_PAD.encode(&tampered), issued());
            assert_eq!(
                result,
                Err(StateError::BadSignature),
                "byte {i} ^ {flip:#x}"
            );
        }
    }
}

#[test]
fn truncated_extended_and_garbled_states_are_refused() {
    let text = signed("default", "default");
    let bytes = URL_SAFE_NO_PAD.decode(&text).unwrap();
    for len in 0..bytes.len() {
        let result = check(&URL_SAFE_NO_PAD.encode(&bytes[..len]), issued());
        assert!(
            matches!(
                result,
                Err(StateError::Malformed | StateError::BadSignature)
            ),
            "{len}: {result:?}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        check(&URL_SAFE_NO_PAD.encode(longer), issued()),
        Err(StateError::BadSignature)
    );
    for garbled in ["", "not base64!", &format!("{text}="), &"A".repeat(5_000)] {
        assert_eq!(
            check(garbled, issued()),
            Err(StateError::Malformed),
            "{garbled}"
        );
    }
}

#[test]
fn another_key_is_a_bad_signature() {
    let text = signed("default", "default");
    let other = verify(&key(&KEY.replace('0', "1")), &text, issued(), &config());
    assert_eq!(other, Err(StateError::BadSignature));
}

#[test]
fn a_signed_payload_of_the_wrong_shape_is_malformed() {
    // What the key signs must also parse: a wrong version, a length past the end, trailing
    // bytes or a name that is not UTF-8 are refused even with a good tag.
    let k = key(KEY);
    let with_tag = |payload: &[u8]| {
        let tag = hmac::sign(&k.0, &labelled(payload));
        URL_SAFE_NO_PAD.encode([payload, tag.as_ref()].concat())
    };
    let good = URL_SAFE_NO_PAD
        .decode(signed("default", "default"))
        .unwrap();
    let payload = &good[..good.len() - TAG_LEN];
    let mut version = payload.to_vec();
    version[0] = 2;
    let mut overlong = payload.to_vec();
    overlong[9] = 200;
    let trailing = [payload, b"x"].concat();
    let mut not_utf8 = payload.to_vec();
    not_utf8[10] = 0xff;
    for bad in [version, overlong, trailing, not_utf8, vec![], vec![VERSION]] {
        assert_eq!(
            verify(&k, &with_tag(&bad), issued(), &config()),
            Err(StateError::Malformed),
            "{bad:?}"
        );
    }
}

#[test]
fn an_app_or_cloud_the_config_lost_is_refused_by_name() {
    assert_eq!(
        check(&signed("gone", "default"), issued()),
        Err(StateError::UnknownApp("gone".into()))
    );
    assert_eq!(
        check(&signed("default", "gone"), issued()),
        Err(StateError::UnknownCloud("gone".into()))
    );
}

#[test]
fn names_too_long_for_the_format_are_refused_at_signing() {
    let long = "a".repeat(256);
    let invite = Invite::new("acme", &long, "default", issued());
    assert_eq!(sign(&key(KEY), &invite), Err(TooLong(long)));
}

#[test]
fn the_key_is_not_in_its_debug() {
    assert_eq!(format!("{:?}", key(KEY)), "StateKey(..)");
}
