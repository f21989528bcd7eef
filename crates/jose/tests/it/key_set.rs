//! Rotation schedule of the key set, with an injected clock.

use portcullis_jose::{Error, KeySet, KeyState, RotationPolicy, Verifier};

use crate::support::{AUDIENCE, ISSUER, NOW, claims_at};

const DAY: u64 = 24 * 3600;

fn policy() -> RotationPolicy {
    RotationPolicy::default()
}

#[test]
fn starts_with_an_active_and_a_published_next_key() {
    let set = KeySet::generate(policy(), NOW).unwrap();
    let states: Vec<KeyState> = set.keys().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        states,
        vec![KeyState::Active { since: NOW }, KeyState::Next]
    );
    assert_eq!(set.jwks().keys.len(), 2);
    assert_eq!(set.next_change_at(), NOW + DAY);
}

#[test]
fn rotation_promotes_next_and_retires_active() {
    let mut set = KeySet::generate(policy(), NOW).unwrap();
    let first = set.signing_key().kid().to_owned();
    let next = set.keys()[1].0.kid().to_owned();
    assert!(
        !set.rotate(NOW + DAY - 1).unwrap(),
        "nothing changes before the period ends"
    );
    assert!(set.rotate(NOW + DAY).unwrap());
    assert_eq!(
        set.signing_key().kid(),
        next,
        "the published next key signs"
    );
    let states: Vec<(String, KeyState)> = set
        .keys()
        .into_iter()
        .map(|(k, s)| (k.kid().to_owned(), s))
        .collect();
    assert_eq!(states[0], (next, KeyState::Active { since: NOW + DAY }));
    assert_eq!(states[1].1, KeyState::Next);
    assert_eq!(states[2], (first, KeyState::Retired { since: NOW + DAY }));
    assert_eq!(set.jwks().keys.len(), 3);
}

#[test]
fn retired_key_is_published_until_its_tokens_expired_then_removed() {
    let policy = policy();
    let grace = policy.token_lifetime + policy.leeway;
    let mut set = KeySet::generate(policy, NOW).unwrap();
    let verifier = Verifier::new(ISSUER, AUDIENCE);

    // Signed just before rotation: lives one token lifetime.
    let signed_at = NOW + DAY - 1;
    let token = set.sign(&claims_at(signed_at, signed_at + 3600)).unwrap();
    set.rotate(NOW + DAY).unwrap();

    // During the grace, the retired key still verifies the token.
    let t = NOW + DAY + grace - 1;
    assert!(!set.rotate(t).unwrap());
    verifier
        .verify(&token, &set.verification_keys(), t - 61)
        .unwrap();

    // After the grace, the key is gone from the JWKS and the token is refused for its kid.
    let t = NOW + DAY + grace;
    assert!(set.rotate(t).unwrap());
    assert_eq!(set.jwks().keys.len(), 2);
    let err = verifier
        .verify(&token, &set.verification_keys(), t)
        .unwrap_err();
    assert!(matches!(err, Error::UnknownKid(_)), "{err}");
}

#[test]
fn private_json_round_trip_keeps_keys_and_schedule() {
    let mut set = KeySet::generate(policy(), NOW).unwrap();
    set.rotate(NOW + DAY).unwrap();
    let bytes = set.to_private_json().unwrap();
    let back = KeySet::from_private_json(policy(), &bytes).unwrap();
    let kids = |s: &KeySet| {
        s.keys()
            .into_iter()
            .map(|(k, st)| (k.kid().to_owned(), st))
            .collect::<Vec<_>>()
    };
    assert_eq!(kids(&set), kids(&back));
    assert_eq!(set.next_change_at(), back.next_change_at());
    assert!(KeySet::from_private_json(policy(), b"{}").is_err());
}

#[test]
fn a_changed_spec_applies_to_new_keys() {
    let mut set = KeySet::generate(policy(), NOW).unwrap();
    set.set_policy(RotationPolicy {
        spec: portcullis_jose::KeySpec::Ed25519,
        ..policy()
    });
    set.rotate(NOW + DAY).unwrap();
    // The next key was ES256 already; the newly generated next key is Ed25519.
    assert_eq!(
        set.signing_key().algorithm(),
        portcullis_jose::Algorithm::ES256
    );
    assert_eq!(
        set.keys()[1].0.algorithm(),
        portcullis_jose::Algorithm::EdDSA
    );
}
