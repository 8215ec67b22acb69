//! What a hostile tenant tried (issue 18): federated tokens outliving their provider or pool,
//! project numbers as an existence oracle, library internals in refusals, `iat`-less and
//! whitespace-wrapped subject tokens.

use super::*;

const POOL_PATH: &str =
    "/v1/projects/primus-bank/locations/global/workloadIdentityPools/primus-pool";

/// Google's error shapes leak nothing of the JWT library.
fn assert_plain(message: &str) {
    for internal in [
        "InvalidLastSymbol",
        "unknown variant",
        "Base64(",
        "Json(",
        "Error(",
        "InvalidToken",
        "ErrorKind",
    ] {
        assert!(
            !message.contains(internal),
            "{internal:?} in the message {message:?}"
        );
    }
}

#[tokio::test]
async fn federated_tokens_end_when_their_provider_or_pool_is_deleted_or_disabled() {
    let cases: [(&str, &str, Option<Value>); 4] = [
        ("DELETE", "/providers/attestation-verifier", None),
        (
            "PATCH",
            "/providers/attestation-verifier?updateMask=disabled",
            Some(json!({"disabled": true})),
        ),
        (
            "PATCH",
            "?updateMask=disabled",
            Some(json!({"disabled": true})),
        ),
        ("DELETE", "", None),
    ];
    for (method, tail, body) in cases {
        let p = Primus::setup().await;
        let (s, b) = p.sts(&rsa(&claims())).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let federated = b["access_token"].as_str().unwrap().to_owned();
        assert_eq!(p.impersonate(&federated).await.0, StatusCode::OK);

        let (s, b) = p
            .api
            .call(&p.alice, method, &format!("{POOL_PATH}{tail}"), body)
            .await;
        assert_eq!(s, StatusCode::OK, "{method} {tail}: {b}");

        let (s, b) = p.impersonate(&federated).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {tail}: {b}");
        assert!(
            message(&b).contains("deleted or disabled since"),
            "{method} {tail}: {b}"
        );
        let id_token = format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateIdToken");
        let (s, b) = p
            .api
            .call(
                &federated,
                "POST",
                &id_token,
                Some(json!({"audience": "x"})),
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {tail}: {b}");
    }
}

#[tokio::test]
async fn strangers_learn_nothing_from_project_numbers_or_ids() {
    let p = Primus::setup().await;
    let bob = p.api.user("bob@example.com").await;
    let pools =
        |project: &str| format!("/v1/projects/{project}/locations/global/workloadIdentityPools");
    // Paths under a project, with PROJECT standing for its number or id.
    let shapes: [(&str, &str, Option<Value>); 6] = [
        ("GET", "", None),
        ("POST", "?workloadIdentityPoolId=bob-pool", Some(json!({}))),
        ("GET", "/primus-pool", None),
        ("DELETE", "/primus-pool", None),
        ("GET", "/primus-pool/providers", None),
        (
            "POST",
            "/primus-pool/providers/attestation-verifier:explain",
            Some(json!({"subjectToken": "x"})),
        ),
    ];
    // The real project's number, a number no project has, its id, an id no project has.
    let unknown_number = if p.number == "123456789012" {
        "123456789013"
    } else {
        "123456789012"
    };
    let pairs = [
        (p.number.as_str(), unknown_number),
        ("primus-bank", "nobody-bank"),
    ];
    for (method, tail, body) in shapes {
        for (real, unknown) in pairs {
            let (s1, b1) = p
                .api
                .call(
                    &bob,
                    method,
                    &format!("{}{tail}", pools(real)),
                    body.clone(),
                )
                .await;
            let (s2, b2) = p
                .api
                .call(
                    &bob,
                    method,
                    &format!("{}{tail}", pools(unknown)),
                    body.clone(),
                )
                .await;
            assert_eq!(s1, StatusCode::FORBIDDEN, "{method} {real}{tail}: {b1}");
            assert_eq!(s2, StatusCode::FORBIDDEN, "{method} {unknown}{tail}: {b2}");
            // The same answer, but for the name the caller gave.
            let same = message(&b2).replace(unknown, real);
            assert_eq!(message(&b1), same, "{method} {tail}");
            if real == p.number {
                assert!(!message(&b1).contains("primus-bank"), "{b1}");
                assert!(!b1.to_string().contains("primus-bank"), "{b1}");
            }
        }
    }
    // The owner still reaches everything by number.
    let (s, b) = p.api.call(&p.alice, "GET", &pools(&p.number), None).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn malformed_tokens_are_refused_in_plain_words() {
    let p = Primus::setup().await;
    let good = rsa(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let rs256 = b64(br#"{"alg":"RS256","typ":"JWT","kid":"rsa-1"}"#);
    // The header's last symbol with bits past the end set (its length is not a multiple of 4).
    assert_ne!(rs256.len() % 4, 0);
    let last_symbol = format!("{}B", &rs256[..rs256.len() - 1]);
    // Genuinely signed, but its claims are a JSON string, not an object.
    let string_claims = sign(
        &json!("not an object"),
        Algorithm::RS256,
        "rsa-1",
        "issuer-rsa.pem",
    );
    // (token, what the refusal says) for a bearer token and for a subject token alike.
    let cases = [
        ("garbage".to_owned(), "not a JWT"),
        ("a.b".to_owned(), "not a JWT"),
        // A base64 last symbol that carries bits past the end: `InvalidLastSymbol` in the
        // library's words.
        (
            format!("{last_symbol}.{}.{}", parts[1], parts[2]),
            "header is not base64url",
        ),
        (
            format!("{}.{}.", b64(br#"{"alg":"none"}"#), parts[1]),
            "algorithm \"none\" is not accepted",
        ),
        (
            format!("{}.{}.x", b64(br#"{"alg":"RS999"}"#), parts[1]),
            "algorithm \"RS999\" is not accepted",
        ),
        (
            format!("{}.{}.x", b64(b"[]"), parts[1]),
            "header is not a JSON object",
        ),
        (
            format!("{}.{}.x", b64(br#"{"typ":"JWT"}"#), parts[1]),
            "names no algorithm",
        ),
        (string_claims, "claims part is not a JSON object"),
        (
            format!("{}.{}.{}", parts[0], parts[1], "s*g"),
            "signature is not base64url",
        ),
    ];
    for (token, says) in &cases {
        let (s, b) = p.api.call(token, "GET", "/v1/projects", None).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{token}: {b}");
        let m = message(&b);
        assert_plain(m);
        // An RS256 header is refused before the rest: access tokens are HS256.
        if !says.contains("claims part") && !says.contains("signature") {
            assert!(m.contains(says), "bearer {token}: {m}");
        }

        let (s, b) = p.sts(token).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{token}: {b}");
        let d = b["error_description"].as_str().unwrap_or_default();
        assert_plain(d);
        assert!(d.contains(says), "subject {token}: {d}");
        if says.contains("\"none\"") {
            assert!(d.contains("use RS256 or ES256"), "{d}");
        }

        let (_, b) = p.explain(token).await;
        assert_plain(&b.to_string());
    }
}

#[tokio::test]
async fn subject_tokens_need_iat_and_may_carry_surrounding_whitespace() {
    let p = Primus::setup().await;
    let mut no_iat = claims();
    no_iat.as_object_mut().unwrap().remove("iat");
    assert_oauth_error(&p.sts(&rsa(&no_iat)).await, "invalid_grant", "no iat claim");
    let mut text_iat = claims();
    text_iat["iat"] = json!("yesterday");
    assert_oauth_error(
        &p.sts(&rsa(&text_iat)).await,
        "invalid_grant",
        "no iat claim",
    );

    // A token read from a file ends in a newline; Google trims it, so does Cloister.
    for wrapped in [
        format!("{}\n", rsa(&claims())),
        format!("  {}\r\n", rsa(&claims())),
        format!("\t{}", rsa(&claims())),
    ] {
        let (s, b) = p.sts(&wrapped).await;
        assert_eq!(s, StatusCode::OK, "{wrapped:?}: {b}");
        let (_, b) = p.explain(&wrapped).await;
        assert_eq!(b["result"], "ACCEPTED", "{b}");
    }
    assert_oauth_error(&p.sts(" \n").await, "invalid_request", "subject_token");
}

/// A tenant's condition or mapping is CEL without a cost limit; with their own issuer's keys
/// they choose the token too. Each case cost minutes or gigabytes on the server's own threads,
/// which every tenant's API shares; the judge's worker passes its limit, is killed, and the
/// token is refused in words the provider's owner can act on. The next token is judged by a
/// fresh worker.
#[tokio::test]
async fn a_condition_or_mapping_that_costs_without_bound_is_refused_and_the_next_token_judged() {
    // Both within the 16 KiB a subject token may have.
    let long_list = vec![0; 1500];
    let long_text = "a".repeat(6000);
    // (limit passed, condition, mapped attribute)
    let cases = [
        (
            "time",
            "assertion.l.all(a, assertion.l.all(b, assertion.l.all(c, c >= 0.0)))",
            "assertion.sub",
        ),
        // 36 MB, then 720 MB: within reach of the host, past the worker's 512 MiB.
        (
            "memory",
            "assertion.s.replace('a', assertion.s).replace('a', 'aaaaaaaaaaaaaaaaaaaa').size() > 0",
            "assertion.sub",
        ),
        // A 36 MB attribute: within the worker's memory, past the answer's 1 MiB.
        ("answer", "true", "assertion.s.replace('a', assertion.s)"),
    ];
    let p = Primus::setup().await;
    for (limit, condition, attribute) in cases {
        let mapping = json!({"google.subject": "assertion.sub", "attribute.costly": attribute});
        set_expressions(&p, condition, mapping).await;
        let mut costly = claims();
        costly["l"] = json!(long_list);
        costly["s"] = json!(long_text);
        let refused = p.sts(&rsa(&costly)).await;
        assert_eq!(
            refused.1["error"], "invalid_grant",
            "{limit}: {}",
            refused.1
        );
        assert!(
            refused.1["error_description"].as_str().is_some_and(|d| d
                .contains("passed the limits on one token (2 s, 512 MiB")
                && d.contains(&format!("it passed its {limit}"))),
            "{limit}: {}",
            refused.1
        );
        // The owner's explanation says the same, and is no 500.
        let (s, b) = p.explain(&rsa(&costly)).await;
        assert_eq!(s, StatusCode::OK, "{limit}: {b}");
        assert_eq!(b["result"], "REJECTED", "{b}");
        assert!(
            b["attributeMapping"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("passed the limits")),
            "{b}"
        );
    }
    // Back to the codelab's provider: the next token is judged, and accepted.
    let mapping = json!({"google.subject": "assertion.sub"});
    set_expressions(&p, &codelab_condition(), mapping).await;
    let (s, b) = p.sts(&rsa(&claims())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// Replaces the provider's condition and mapping.
async fn set_expressions(p: &Primus, condition: &str, mapping: Value) {
    let body = json!({"attributeCondition": condition, "attributeMapping": mapping});
    let path = format!(
        "{}?updateMask=attributeCondition,attributeMapping",
        p.provider_path()
    );
    let (s, b) = p.api.call(&p.alice, "PATCH", &path, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// A refused exchange is audited for good (the log is append-only), and an anonymous caller
/// chooses much of a refused token: its key id was kept whole, 8 KB and more an entry.
#[tokio::test]
async fn a_refused_tokens_chosen_text_is_audited_bounded() {
    let p = Primus::setup().await;
    let kid = "k".repeat(8_000);
    let forged = sign(&claims(), Algorithm::RS256, &kid, "issuer-rsa.pem");
    let refused = p.sts(&forged).await;
    assert_oauth_error(&refused, "invalid_grant", "which the issuer");
    let shown = refused.1["error_description"].as_str().unwrap();
    assert!(shown.len() < 1024, "{} bytes: {shown}", shown.len());
    let entry = p.denials().await.last().unwrap().to_string();
    assert!(entry.contains("kkkk"), "{entry}");
    assert!(entry.len() < 5 * 1024, "{} bytes: {entry}", entry.len());
}
