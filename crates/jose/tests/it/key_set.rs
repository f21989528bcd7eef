//! Rotation schedule of the key set, with an injected clock.

use portcullis_jose::{Algorithm, Error, KeySet, KeySpec, KeyState, RotationPolicy, Verifier};

use crate::support::{AUDIENCE, ISSUER, NOW, claims_at};

const DAY: u64 = 24 * 3600;

/// One algorithm, so that the schedule of one ring is seen alone.
fn policy() -> RotationPolicy {
    RotationPolicy {
        specs: vec![KeySpec::Es256],
        ..RotationPolicy::default()
    }
}

fn algs(set: &KeySet) -> Vec<(Algorithm, KeyState)> {
    set.keys()
        .into_iter()
        .map(|(k, s)| (k.algorithm(), s))
        .collect()
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
    let first = set.signing_key().unwrap().kid().to_owned();
    let next = set.keys()[1].0.kid().to_owned();
    assert!(
        !set.rotate(NOW + DAY - 1).unwrap(),
        "nothing changes before the period ends"
    );
    assert!(set.rotate(NOW + DAY).unwrap());
    assert_eq!(
        set.signing_key().unwrap().kid(),
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
fn the_default_publishes_es256_and_rs256_each_signing() {
    let set = KeySet::generate(RotationPolicy::default(), NOW).unwrap();
    assert_eq!(
        algs(&set),
        vec![
            (Algorithm::ES256, KeyState::Active { since: NOW }),
            (Algorithm::ES256, KeyState::Next),
            (Algorithm::RS256, KeyState::Active { since: NOW }),
            (Algorithm::RS256, KeyState::Next),
        ]
    );
    assert_eq!(set.algorithms(), vec![Algorithm::ES256, Algorithm::RS256]);
    assert_eq!(set.signing_key().unwrap().algorithm(), Algorithm::ES256);
    let verifier = Verifier::new(ISSUER, AUDIENCE);
    for alg in [Algorithm::ES256, Algorithm::RS256] {
        let key = set.signing_key_for(alg).unwrap();
        assert_eq!(key.algorithm(), alg);
        let token = key.sign(&claims_at(NOW, NOW + 3600)).unwrap();
        let verified = verifier
            .verify(&token, &set.verification_keys(), NOW)
            .unwrap();
        assert_eq!(verified.algorithm, alg);
    }
    assert!(set.signing_key_for(Algorithm::EdDSA).is_none());
}

#[test]
fn a_policy_listing_nothing_or_an_algorithm_twice_is_refused() {
    for specs in [vec![], vec![KeySpec::Rs256Bits2048, KeySpec::Rs256Bits3072]] {
        let policy = RotationPolicy {
            specs,
            ..RotationPolicy::default()
        };
        assert!(KeySet::generate(policy.clone(), NOW).is_err());
        let mut set = KeySet::generate(RotationPolicy::default(), NOW).unwrap();
        assert!(set.set_policy(policy).is_err());
    }
}

#[test]
fn an_added_algorithm_is_published_before_it_signs() {
    let mut set = KeySet::generate(policy(), NOW).unwrap();
    let lead = set.policy().publish_lead;
    set.set_policy(RotationPolicy {
        specs: vec![KeySpec::Es256, KeySpec::Ed25519],
        ..policy()
    })
    .unwrap();
    assert!(set.rotate(NOW + 10).unwrap());
    // Published at once, signing only after the lead.
    assert!(algs(&set).contains(&(Algorithm::EdDSA, KeyState::Next)));
    assert!(set.signing_key_for(Algorithm::EdDSA).is_none());
    assert_eq!(set.signs_from(Algorithm::EdDSA), Some(NOW + 10 + lead));
    assert_eq!(set.next_change_at(), NOW + 10 + lead);
    assert_eq!(set.signing_key().unwrap().algorithm(), Algorithm::ES256);
    let published = set.keys()[2].0.kid().to_owned();

    assert!(!set.rotate(NOW + 10 + lead - 1).unwrap());
    assert!(set.rotate(NOW + 10 + lead).unwrap());
    assert_eq!(
        set.signing_key_for(Algorithm::EdDSA).unwrap().kid(),
        published,
        "the key published in advance is the one that signs"
    );
    assert_eq!(set.signs_from(Algorithm::EdDSA), None);
    assert_eq!(
        algs(&set)
            .iter()
            .filter(|(a, _)| *a == Algorithm::EdDSA)
            .count(),
        2,
        "an active and a next EdDSA key"
    );
}

#[test]
fn a_dropped_algorithm_signs_until_its_replacement_does_and_stays_published_until_its_tokens_expired()
 {
    let mut set = KeySet::generate(policy(), NOW).unwrap();
    let lead = set.policy().publish_lead;
    let grace = set.policy().token_lifetime + set.policy().leeway;
    let verifier = Verifier::new(ISSUER, AUDIENCE);
    set.set_policy(RotationPolicy {
        specs: vec![KeySpec::Rs256Bits2048],
        ..policy()
    })
    .unwrap();
    assert!(set.rotate(NOW).unwrap());
    // RS256 is only published yet: ES256 keeps signing by default.
    assert_eq!(set.signing_key().unwrap().algorithm(), Algorithm::ES256);
    assert_eq!(set.algorithms(), vec![Algorithm::RS256, Algorithm::ES256]);

    let at = NOW + lead;
    let old_token = set.sign(&claims_at(at - 1, at - 1 + 3600)).unwrap();
    assert!(set.rotate(at).unwrap());
    assert_eq!(set.signing_key().unwrap().algorithm(), Algorithm::RS256);
    assert!(set.signing_key_for(Algorithm::ES256).is_none());
    assert_eq!(set.algorithms(), vec![Algorithm::RS256]);
    assert!(algs(&set).contains(&(Algorithm::ES256, KeyState::Retired { since: at })));
    assert!(
        !algs(&set).contains(&(Algorithm::ES256, KeyState::Next)),
        "the ES256 next key never signed and is gone"
    );
    verifier
        .verify(&old_token, &set.verification_keys(), at)
        .unwrap();

    assert!(set.rotate(at + grace).unwrap());
    assert!(
        algs(&set).iter().all(|(a, _)| *a == Algorithm::RS256),
        "{:?}",
        algs(&set)
    );
    // The ES256 token is refused for its kid once its key is gone.
    let err = verifier
        .verify(&old_token, &set.verification_keys(), at)
        .unwrap_err();
    assert!(matches!(err, Error::UnknownKid(_)), "{err}");
}

#[test]
fn a_set_stored_with_one_algorithm_loads_and_gains_the_policys_others() {
    // The stored form of earlier versions: one schedule, no states.
    let old = KeySet::generate(policy(), NOW).unwrap();
    let active = old.keys()[0].0;
    let next = old.keys()[1].0;
    let b64 = |k: &portcullis_jose::SigningKey| crate::support::b64(&k.to_pkcs8());
    let stored = serde_json::json!({
        "next": { "alg": "ES256", "pkcs8": b64(next) },
        "active": { "alg": "ES256", "pkcs8": b64(active), "since": NOW },
        "retired": [],
    });
    let mut set =
        KeySet::from_private_json(RotationPolicy::default(), stored.to_string().as_bytes())
            .unwrap();
    assert_eq!(
        set.signing_key_for(Algorithm::ES256).unwrap().kid(),
        active.kid()
    );
    assert!(set.rotate(NOW + 5).unwrap(), "RS256 is added");
    assert!(algs(&set).contains(&(Algorithm::RS256, KeyState::Next)));
    let back =
        KeySet::from_private_json(RotationPolicy::default(), &set.to_private_json().unwrap())
            .unwrap();
    assert_eq!(algs(&back), algs(&set));
    assert_eq!(back.next_change_at(), set.next_change_at());
}
