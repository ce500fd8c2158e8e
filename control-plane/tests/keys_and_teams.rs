//! API keys, the legacy key route, teams, invitations and authorization
//! between teams, on SQLite and PostgreSQL.

mod common;

use axum::http::StatusCode;
use common::*;
use serde_json::json;

const PW: &str = "tulip-Orbit-94";

async fn new_key(t: &TestApp, u: &User, team: &str, abilities: serde_json::Value) -> String {
    let r = t
        .call(Req::post(&format!("/v1/teams/{team}/keys"), json!({"name": "ci", "abilities": abilities})).signed_in(u))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json["key"].as_str().unwrap().to_string()
}

on_both_databases!(a_key_is_shown_once_stored_hashed_and_works, |t: TestApp| async move {
    let u = t.user("k@example.com", PW).await;
    let key = new_key(&t, &u, &u.team, json!(["read", "write"])).await;
    assert!(key.starts_with("img_live_") && key.len() > 40);
    assert_eq!(
        t.count(&format!("SELECT COUNT(*) FROM api_keys WHERE key_hash = '{key}' OR prefix = '{key}'")).await,
        0
    );
    let list = t.call(Req::get(&format!("/v1/teams/{}/keys", u.team)).cookie_only(&u)).await;
    assert_eq!(list.json["data"].as_array().unwrap().len(), 1);
    assert!(!list.text.contains(&key), "a listing must never contain the secret");
    assert_eq!(list.json["data"][0]["last_used"], serde_json::Value::Null);

    let r = t.call(Req::get("/v1/whoami").key(&key)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["type"], "api_key");
    assert_eq!(r.json["team_id"], u.team.as_str());
    // Last use is kept by day, not by second.
    t.clock.advance(3 * 3600 + 17);
    t.call(Req::get("/v1/whoami").key(&key)).await;
    let list = t.call(Req::get(&format!("/v1/teams/{}/keys", u.team)).cookie_only(&u)).await;
    assert_eq!(list.json["data"][0]["last_used"], "2026-01-01");
    assert_eq!(list.json["data"][0]["created"], "2026-01-01");

    let wrong = t.call(Req::get("/v1/whoami").key("img_live_forged0000000000000000000000000000000")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "unauthorized");
    let id = list.json["data"][0]["id"].as_str().unwrap().to_string();
    let r = t.call(Req::new("DELETE", &format!("/v1/teams/{}/keys/{id}", u.team)).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(t.call(Req::get("/v1/whoami").key(&key)).await.status, StatusCode::UNAUTHORIZED);
});

on_both_databases!(a_key_outside_its_abilities_is_refused_before_the_body_is_read, |t: TestApp| async move {
    let u = t.user("ro@example.com", PW).await;
    let read_only = new_key(&t, &u, &u.team, json!(["read"])).await;
    let write_only = new_key(&t, &u, &u.team, json!(["write"])).await;
    // A malformed body would be a 400 if it were read: the 403 comes first.
    let r = t.call(Req::new("POST", "/v1/teams").raw("application/json", b"{broken".to_vec()).key(&read_only)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.code(), "forbidden");
    assert_eq!(t.call(Req::get("/v1/whoami").key(&read_only)).await.status, StatusCode::OK);
    let r = t.call(Req::get("/v1/whoami").key(&write_only)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .call(
            Req::post(&format!("/v1/teams/{}/keys", u.team), json!({"name": "x", "abilities": ["admin"]}))
                .signed_in(&u),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
});

on_both_databases!(unverified_accounts_hold_at_most_three_keys, |t: TestApp| async move {
    t.call(Req::post(
        "/v1/auth/signup",
        json!({"email": "unv@example.com", "name": "U", "password": PW, "age_confirmed": true}),
    ))
    .await;
    let u = t.login("unv@example.com", PW).await;
    for _ in 0..3 {
        new_key(&t, &u, &u.team, json!(["read", "write"])).await;
    }
    let r = t.call(Req::post(&format!("/v1/teams/{}/keys", u.team), json!({"name": "4th"})).signed_in(&u)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(t.count("SELECT COUNT(*) FROM api_keys").await, 3);
});

on_both_databases!(legacy_post_keys_creates_an_account_and_a_key, |t: TestApp| async move {
    let r = t
        .call(
            Req::post("/v1/keys", json!({"email": "Legacy@Example.com", "name": "Old client"}))
                .header("x-forwarded-for", "192.0.2.1"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let key = r.json["key"].as_str().unwrap().to_string();
    assert_eq!(r.json["verified"], false);
    assert_eq!(t.call(Req::get("/v1/whoami").key(&key)).await.status, StatusCode::OK);
    assert_eq!(
        t.count("SELECT COUNT(*) FROM users WHERE email = 'legacy@example.com' AND password_hash IS NULL").await,
        1
    );
    assert_eq!(t.mail_to("legacy@example.com").await.len(), 1, "a verification mail goes out");
    // An address that has an account gets no key.
    let again = t
        .call(Req::post("/v1/keys", json!({"email": "legacy@example.com"})).header("x-forwarded-for", "192.0.2.1"))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.json.get("key").is_none());
    assert_eq!(t.count("SELECT COUNT(*) FROM api_keys").await, 1);
    // Bad input.
    let r = t.call(Req::post("/v1/keys", json!({"email": "nope"}))).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
});

on_both_databases!(legacy_post_keys_is_rate_limited_per_email_and_per_client, |t: TestApp| async move {
    // Per email: 5 an hour.
    for i in 0..5 {
        let r = t
            .call(
                Req::post("/v1/keys", json!({"email": "burst@example.com"}))
                    .header("x-forwarded-for", &format!("192.0.2.{i}")),
            )
            .await;
        assert_ne!(r.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let r = t
        .call(Req::post("/v1/keys", json!({"email": "burst@example.com"})).header("x-forwarded-for", "192.0.2.99"))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.code(), "rate_limited");
    assert_eq!(r.json["error"]["type"], "rate_limit_error");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 3600);
    // Per client: 20 an hour, whatever the emails.
    for i in 0..20 {
        let r = t
            .call(
                Req::post("/v1/keys", json!({"email": format!("c{i}@example.com")}))
                    .header("x-forwarded-for", "198.51.100.200"),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "call {i}: {}", r.text);
    }
    let r = t
        .call(Req::post("/v1/keys", json!({"email": "c20@example.com"})).header("x-forwarded-for", "198.51.100.200"))
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(t.count("SELECT COUNT(*) FROM users WHERE email = 'c20@example.com'").await, 0);
    // An hour later the client may call again.
    t.clock.advance(3600);
    let r = t
        .call(Req::post("/v1/keys", json!({"email": "c20@example.com"})).header("x-forwarded-for", "198.51.100.200"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    // The client address is in no text column of any table this route writes
    // (rate limits count it in memory only, hashed).
    for (table, columns) in [
        ("users", "email || name"),
        ("api_keys", "name || prefix"),
        ("consents", "source || COALESCE(country, '')"),
        ("outbound_emails", "recipient || subject || body"),
        ("teams", "name"),
    ] {
        assert!(t.count(&format!("SELECT COUNT(*) FROM {table}")).await > 0, "{table} is empty: nothing checked");
        let hits = t.count(&format!("SELECT COUNT(*) FROM {table} WHERE {columns} LIKE '%198.51.100.200%'")).await;
        assert_eq!(hits, 0, "{table} holds the client address");
    }
    assert_eq!(t.count("SELECT COUNT(*) FROM sessions").await, 0);
});

on_both_databases!(invite_a_teammate_who_accepts_by_the_emailed_link, |t: TestApp| async move {
    let owner = t.user("owner@example.com", PW).await;
    let r = t.call(Req::post("/v1/teams", json!({"name": "Studio"})).signed_in(&owner)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let team = r.json["id"].as_str().unwrap().to_string();
    let r = t
        .call(
            Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": "mate@example.com", "role": "admin"}))
                .signed_in(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let invite = t.mail_to("mate@example.com").await;
    assert_eq!(invite.len(), 1);
    assert!(invite[0].subject.contains("Studio"));
    let token = invite[0].token("/accept-invite").unwrap();

    let mate = t.user("mate@example.com", PW).await;
    let stranger = t.user("stranger@example.com", PW).await;
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(&stranger)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "an invitation is for its address only");
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(&mate)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json["role"], "admin");
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(&mate)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "single use");
    let members = t.call(Req::get(&format!("/v1/teams/{team}/members")).cookie_only(&mate)).await;
    let mut roles: Vec<(String, String)> = members.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["email"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string()))
        .collect();
    roles.sort();
    assert_eq!(roles, [("mate@example.com".into(), "admin".into()), ("owner@example.com".into(), "owner".into())]);
    let mine = t.call(Req::get("/v1/teams").cookie_only(&mate)).await;
    assert_eq!(mine.json["data"].as_array().unwrap().len(), 2);
});

on_both_databases!(an_expired_invitation_cannot_be_accepted, |t: TestApp| async move {
    let owner = t.user("o2@example.com", PW).await;
    let team = t.call(Req::post("/v1/teams", json!({"name": "Late"})).signed_in(&owner)).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    t.call(Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": "slow@example.com"})).signed_in(&owner))
        .await;
    let token = t.mail_to("slow@example.com").await[0].token("/accept-invite").unwrap();
    let slow = t.user("slow@example.com", PW).await;
    t.clock.advance(t.state.cfg.invite_ttl_secs + 1);
    // The session still lives (8 days < 90).
    let r = t.call(Req::post("/v1/invitations/accept", json!({"token": token})).signed_in(&slow)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(t.count(&format!("SELECT COUNT(*) FROM memberships WHERE team_id = '{team}'")).await, 1);
});

on_both_databases!(a_member_of_one_team_can_never_touch_another, |t: TestApp| async move {
    let alice = t.user("alice@example.com", PW).await;
    let bob = t.user("bob@example.com", PW).await;
    let a_team = t.call(Req::post("/v1/teams", json!({"name": "A"})).signed_in(&alice)).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    let a_key = new_key(&t, &alice, &a_team, json!(["read", "write"])).await;
    let key_id = t.call(Req::get(&format!("/v1/teams/{a_team}/keys")).cookie_only(&alice)).await.json["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Bob, owner of his own teams, tries everything on Alice's team and personal team.
    for team in [&a_team, &alice.team] {
        for req in [
            Req::get(&format!("/v1/teams/{team}")),
            Req::get(&format!("/v1/teams/{team}/members")),
            Req::get(&format!("/v1/teams/{team}/keys")),
            Req::post(&format!("/v1/teams/{team}/keys"), json!({"name": "mine now"})),
            Req::new("DELETE", &format!("/v1/teams/{team}/keys/{key_id}")),
            Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": "bob2@example.com"})),
            Req::new("PATCH", &format!("/v1/teams/{team}/members/{}", alice.id)).json(json!({"role": "member"})),
            Req::new("DELETE", &format!("/v1/teams/{team}/members/{}", alice.id)),
            Req::new("POST", &format!("/v1/teams/{team}/leave")),
        ] {
            let path = req.path.clone();
            let r = t.call(req.signed_in(&bob)).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {}", r.text);
        }
    }
    // Nothing changed, and Alice's key still works.
    assert_eq!(
        t.count(&format!("SELECT COUNT(*) FROM api_keys WHERE team_id = '{a_team}' AND revoked_at IS NULL")).await,
        1
    );
    assert_eq!(t.count(&format!("SELECT COUNT(*) FROM memberships WHERE team_id = '{a_team}'")).await, 1);
    assert_eq!(t.call(Req::get("/v1/whoami").key(&a_key)).await.json["team_id"], a_team.as_str());
});

on_both_databases!(roles_limit_what_members_and_admins_may_do, |t: TestApp| async move {
    let owner = t.user("boss@example.com", PW).await;
    let team = t.call(Req::post("/v1/teams", json!({"name": "Roles"})).signed_in(&owner)).await.json["id"]
        .as_str()
        .unwrap()
        .to_string();
    for (email, role) in [("adm@example.com", "admin"), ("mem@example.com", "member")] {
        t.call(
            Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": email, "role": role}))
                .signed_in(&owner),
        )
        .await;
    }
    let adm_token = t.mail_to("adm@example.com").await[0].token("/accept-invite").unwrap();
    let mem_token = t.mail_to("mem@example.com").await[0].token("/accept-invite").unwrap();
    let adm = t.user("adm@example.com", PW).await;
    let mem = t.user("mem@example.com", PW).await;
    t.call(Req::post("/v1/invitations/accept", json!({"token": adm_token})).signed_in(&adm)).await;
    t.call(Req::post("/v1/invitations/accept", json!({"token": mem_token})).signed_in(&mem)).await;

    // A member reads but does not manage.
    assert_eq!(t.call(Req::get(&format!("/v1/teams/{team}/members")).cookie_only(&mem)).await.status, StatusCode::OK);
    let r = t
        .call(Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": "x@example.com"})).signed_in(&mem))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t.call(Req::post(&format!("/v1/teams/{team}/keys"), json!({"name": "k"})).signed_in(&mem)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // An admin manages members but cannot reach above their role.
    let r = t
        .call(
            Req::post(&format!("/v1/teams/{team}/invitations"), json!({"email": "x@example.com", "role": "owner"}))
                .signed_in(&adm),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .call(
            Req::new("PATCH", &format!("/v1/teams/{team}/members/{}", owner.id))
                .json(json!({"role": "member"}))
                .signed_in(&adm),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t.call(Req::new("DELETE", &format!("/v1/teams/{team}/members/{}", owner.id)).signed_in(&adm)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .call(
            Req::new("PATCH", &format!("/v1/teams/{team}/members/{}", mem.id))
                .json(json!({"role": "admin"}))
                .signed_in(&adm),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = t.call(Req::new("DELETE", &format!("/v1/teams/{team}/members/{}", mem.id)).signed_in(&adm)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(t.call(Req::get(&format!("/v1/teams/{team}")).cookie_only(&mem)).await.status, StatusCode::NOT_FOUND);
    // The last owner can neither leave nor be demoted; personal teams cannot be left.
    let r = t.call(Req::new("POST", &format!("/v1/teams/{team}/leave")).signed_in(&owner)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = t
        .call(
            Req::new("PATCH", &format!("/v1/teams/{team}/members/{}", owner.id))
                .json(json!({"role": "admin"}))
                .signed_in(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = t.call(Req::new("POST", &format!("/v1/teams/{}/leave", owner.team)).signed_in(&owner)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    let r = t
        .call(
            Req::post(&format!("/v1/teams/{}/invitations", owner.team), json!({"email": "y@example.com"}))
                .signed_in(&owner),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    // An admin may leave.
    let r = t.call(Req::new("POST", &format!("/v1/teams/{team}/leave")).signed_in(&adm)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
});
