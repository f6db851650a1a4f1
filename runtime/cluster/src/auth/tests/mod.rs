//! Unit tests of [`super`]: signing, verification, replay, tampering, modes (kept apart to
//! keep `auth.rs` short).

use super::*;

const SECRET: &str = "a-cluster-secret-for-tests";
const PATH: &str = "/v1/peer/raft/0/append";

fn signed(auth: &PeerAuth, path: &str, body: Signed<'_>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    auth.sign(2, &Method::POST, path, body, &mut headers);
    headers
}

fn refused(result: Result<(), Error>) -> String {
    match result {
        Err(Error::Unauthorized(m)) => m,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_valid_request_is_accepted_once() {
    let auth = PeerAuth::secret(SECRET).unwrap();
    let headers = signed(&auth, PATH, Signed::Body(b"body"));
    assert!(headers.contains_key(SIGNATURE_HEADER));
    auth.check(&headers, false, &Method::POST, PATH, Signed::Body(b"body"))
        .unwrap();
    // Another node with the same secret accepts it too.
    let other = PeerAuth::secret(SECRET).unwrap();
    other
        .check(&headers, false, &Method::POST, PATH, Signed::Body(b"body"))
        .unwrap();
    let replay = refused(auth.check(&headers, false, &Method::POST, PATH, Signed::Body(b"body")));
    assert!(replay.contains("already received"), "{replay}");
    // Streams sign the opening request.
    let headers = signed(&auth, "/v1/peer/mux", Signed::Stream);
    auth.check(
        &headers,
        false,
        &Method::POST,
        "/v1/peer/mux",
        Signed::Stream,
    )
    .unwrap();
}

#[test]
fn tampering_is_refused() {
    let auth = PeerAuth::secret(SECRET).unwrap();
    let headers = signed(&auth, PATH, Signed::Body(b"body"));
    let check =
        |h: &HeaderMap, m: &Method, p: &str, b: Signed<'_>| refused(auth.check(h, false, m, p, b));
    // The body (refused after the head passed: that signature is then spent).
    let spent = signed(&auth, PATH, Signed::Body(b"body"));
    let m = check(&spent, &Method::POST, PATH, Signed::Body(b"bodz"));
    assert!(m.contains("body is not the one"), "{m}");
    let mut h = spent.clone();
    h.insert(
        BODY_HEADER,
        HeaderValue::from_str(&body_field(Signed::Body(b"bodz"))).unwrap(),
    );
    let m = check(&h, &Method::POST, PATH, Signed::Body(b"bodz"));
    assert!(m.contains("does not match"), "{m}");
    // The path, the method, or a stream in place of a body.
    check(
        &headers,
        &Method::POST,
        "/v1/peer/raft/1/append",
        Signed::Body(b"body"),
    );
    check(&headers, &Method::PUT, PATH, Signed::Body(b"body"));
    check(&headers, &Method::POST, PATH, Signed::Stream);
    let stream = signed(&auth, PATH, Signed::Stream);
    let m = check(&stream, &Method::POST, PATH, Signed::Body(b""));
    assert!(m.contains("signed for a streaming one"), "{m}");
    // The time, the node or the nonce.
    for (name, value) in [(TIME_HEADER, "1"), (NODE_HEADER, "3"), (NONCE_HEADER, "x")] {
        let mut h = headers.clone();
        let value = if name == TIME_HEADER {
            (now_secs() - 2).to_string()
        } else {
            value.to_string()
        };
        h.insert(name, HeaderValue::from_str(&value).unwrap());
        let m = check(&h, &Method::POST, PATH, Signed::Body(b"body"));
        assert!(m.contains("does not match"), "{name}: {m}");
    }
    // Another secret.
    let wrong = PeerAuth::secret("another-secret-of-the-same-kind").unwrap();
    let h = signed(&wrong, PATH, Signed::Body(b"body"));
    let m = check(&h, &Method::POST, PATH, Signed::Body(b"body"));
    assert!(m.contains("--cluster-secret differs"), "{m}");
    // Nothing was accepted: the original still is.
    auth.check(&headers, false, &Method::POST, PATH, Signed::Body(b"body"))
        .unwrap();
}

#[test]
fn missing_malformed_or_stale_credentials_are_refused_before_the_body() {
    let auth = PeerAuth::secret(SECRET).unwrap();
    let m = refused(auth.admit(&HeaderMap::new(), false).map(drop));
    assert!(m.contains("--cluster-secret"), "{m}");
    let headers = signed(&auth, PATH, Signed::Body(b""));
    for (name, value) in [
        (NODE_HEADER, "two"),
        (TIME_HEADER, "soon"),
        (SIGNATURE_HEADER, "abc"),
        (NONCE_HEADER, ""),
        (BODY_HEADER, "not-a-digest"),
    ] {
        let mut h = headers.clone();
        h.insert(name, HeaderValue::from_static(value));
        refused(auth.admit(&h, false).map(drop));
    }
    for skew in [
        -(MAX_SKEW.as_secs() as i64) - 5,
        MAX_SKEW.as_secs() as i64 + 5,
    ] {
        let mut h = headers.clone();
        let time = now_secs().saturating_add_signed(skew);
        h.insert(
            TIME_HEADER,
            HeaderValue::from_str(&time.to_string()).unwrap(),
        );
        let m = refused(auth.admit(&h, false).map(drop));
        assert!(m.contains("clock"), "{m}");
    }
}

#[test]
fn modes() {
    assert!(PeerAuth::secret("short").is_err());
    let closed = PeerAuth::closed();
    assert!(!closed.accepts_peers());
    let m = refused(closed.admit(&HeaderMap::new(), false).map(drop));
    assert_eq!(m, CLOSED);
    // A signed request is refused by a closed node too.
    let headers = signed(&PeerAuth::secret(SECRET).unwrap(), PATH, Signed::Stream);
    refused(closed.check(&headers, false, &Method::POST, PATH, Signed::Stream));
    let insecure = PeerAuth::insecure();
    let mut headers = HeaderMap::new();
    insecure.sign(1, &Method::POST, PATH, Signed::Stream, &mut headers);
    assert!(headers.is_empty());
    insecure
        .check(&headers, false, &Method::POST, PATH, Signed::Stream)
        .unwrap();
    // Debug output never shows the secret.
    let shown = format!("{:?}", PeerAuth::secret(SECRET).unwrap());
    assert!(!shown.contains(SECRET), "{shown}");
}

/// A client configuration trusting nothing: enough to put a node in certificate mode.
#[allow(deprecated)]
fn client_tls() -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth(),
    )
}

#[test]
fn certificates_are_required_when_configured() {
    // Certificates alone: unsigned requests pass on a certified connection only.
    let certs = PeerAuth::certificates(client_tls());
    assert!(certs.accepts_peers() && certs.requires_certificate() && !certs.is_secret());
    let mut headers = HeaderMap::new();
    certs.sign(1, &Method::POST, PATH, Signed::Stream, &mut headers);
    assert!(headers.is_empty());
    certs
        .check(&headers, true, &Method::POST, PATH, Signed::Body(b"x"))
        .unwrap();
    let m = refused(certs.check(&headers, false, &Method::POST, PATH, Signed::Body(b"x")));
    assert_eq!(m, NO_CERTIFICATE);
    // A secret and certificates: both are required.
    let both = PeerAuth::secret(SECRET)
        .unwrap()
        .and_certificates(client_tls());
    let signed = signed(&both, PATH, Signed::Body(b"x"));
    let m = refused(both.check(&signed, false, &Method::POST, PATH, Signed::Body(b"x")));
    assert_eq!(m, NO_CERTIFICATE);
    refused(both.check(
        &HeaderMap::new(),
        true,
        &Method::POST,
        PATH,
        Signed::Body(b"x"),
    ));
    both.check(&signed, true, &Method::POST, PATH, Signed::Body(b"x"))
        .unwrap();
    assert_eq!(format!("{both:?}"), "PeerAuth::Secret(..)+Certificates");
    // Without certificates nothing changes: the mark is not needed.
    assert!(!PeerAuth::secret(SECRET).unwrap().requires_certificate());
}
