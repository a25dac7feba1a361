//! What a backup's contents cannot do: elevate, pass tampered, or be checked wrong.

use super::*;

/// A function the tenant planted in a CHECK constraint and a default runs during the
/// restore, and tries everything: it gets no more than the tenant's owner role has.
#[tokio::test]
async fn a_malicious_function_in_a_restored_dump_does_not_elevate() {
    log();
    let app = TestApp::spawn().await;
    let name = unique("evil");
    let t = create(&app, &name, "schema").await;
    let (s, admin) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/users"),
            Some(json!({"email": "mallory@example.com", "role": "tenant_admin"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let login = t["role"].as_str().unwrap();
    let mallory = connect_as(&admin["credentials"]).await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    mallory
        .batch_execute(&format!(
            "CREATE TABLE evidence (at text, who text, outcome text);
             CREATE FUNCTION {stem}.attempt(label text, stmt text) RETURNS void LANGUAGE plpgsql AS $f$
             BEGIN
                 BEGIN
                     IF label <> 'control' THEN EXECUTE 'RESET ROLE'; END IF;
                     EXECUTE stmt;
                     INSERT INTO {stem}.evidence VALUES (label, session_user || '/' || current_user, 'SUCCEEDED');
                 EXCEPTION WHEN others THEN
                     INSERT INTO {stem}.evidence VALUES (label, session_user || '/' || current_user, SQLERRM);
                 END;
             END $f$;
             CREATE FUNCTION {stem}.pwn(v int) RETURNS boolean LANGUAGE plpgsql AS $f$
             BEGIN
                 IF session_user::text LIKE 'tenant\\_%' THEN RETURN true; END IF;
                 PERFORM {stem}.attempt('super', 'ALTER ROLE {login} SUPERUSER');
                 PERFORM {stem}.attempt('createrole', 'ALTER ROLE {login} CREATEROLE');
                 PERFORM {stem}.attempt('newrole', 'CREATE ROLE pwned_{stem} SUPERUSER LOGIN');
                 PERFORM {stem}.attempt('control', 'INSERT INTO berqenas.audit_log (actor, action) VALUES (''mallory'', ''forged'')');
                 PERFORM {stem}.attempt('grant', 'GRANT pg_read_server_files TO {login}');
                 RETURN true;
             END $f$;
             CREATE TABLE victims (v int CHECK ({stem}.pwn(v)), w int DEFAULT 1);
             INSERT INTO victims (v) VALUES (1), (2);"
        ))
        .await
        .unwrap();
    let b = backup(&app, &name).await;
    let bid = b["id"].as_str().unwrap();
    let (s, body) = restore_backup(&app, &name, bid, None).await;
    assert_eq!(s, StatusCode::OK, "{body}");

    let pg = superuser().await;
    let attrs: (bool, bool) = {
        let r = pg
            .query_one(
                "SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = $1",
                &[&login],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(attrs, (false, false), "the login role gained nothing");
    let pwned = count(
        &pg,
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pwned%'",
        &[],
    )
    .await;
    assert_eq!(pwned, 0);
    let forged = count(
        &pg,
        "SELECT count(*) FROM berqenas.audit_log WHERE action = 'forged'",
        &[],
    )
    .await;
    assert_eq!(forged, 0);
    let member: bool = pg
        .query_one(
            "SELECT pg_has_role($1, 'pg_read_server_files', 'MEMBER')",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!member);
    // The function did run during the restore, as the throw-away role, and failed.
    let evidence = rows(&pg, &format!(
        "SELECT at || ' ' || who || ' ' || outcome FROM {stem}.evidence WHERE who LIKE 'berqenas\\_restore\\_%' ORDER BY 1"
    ))
    .await;
    assert!(
        !evidence.is_empty(),
        "the planted function ran during the restore"
    );
    assert!(
        evidence.iter().all(|e| !e.ends_with("SUCCEEDED")),
        "{evidence:#?}"
    );
    let temp_roles = count(
        &pg,
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'berqenas\\_restore\\_%'",
        &[],
    )
    .await;
    assert_eq!(temp_roles, 0, "the throw-away role is gone");
    // Verify restores the same archive in a scratch database, where the function
    // runs again (and can do even less); its own writes there show as a difference.
    let (s, report) = verify(&app, bid).await;
    assert_eq!(s, StatusCode::OK, "{report}");
    let failing: Vec<&str> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["ok"] == false)
        .map(|t| t["table"].as_str().unwrap())
        .collect();
    assert_eq!(failing, ["evidence"], "{report}");
    let attrs: bool = pg
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!attrs);
}

/// A tampered object is refused (the tenant keeps its data); a failed backup leaves a
/// countable `failed` row with its error; unencrypted backups work too.
#[tokio::test]
async fn tampering_is_detected_and_failures_are_recorded() {
    let app = TestApp::spawn().await;
    let name = unique("tamper");
    let t = create(&app, &name, "schema").await;
    fill(&t, 5).await;
    let before = snapshot(&t).await;
    let b = backup(&app, &name).await;
    let bid = b["id"].as_str().unwrap();
    let object = store_dir()
        .await
        .join(format!("{}/{bid}.bqb", t["id"].as_str().unwrap()));
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&object, &bytes).unwrap();
    let (s, e) = restore_backup(&app, &name, bid, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "backup_corrupt", "{e}");
    assert_eq!(
        snapshot(&t).await,
        before,
        "a refused restore changes nothing"
    );
    assert!(
        can_log_in(&t).await,
        "logins are back after a failed restore"
    );
    let (s, e) = verify(&app, bid).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");

    // Unencrypted by policy: stored as pg_dump wrote it, checked by its digest.
    let (s, _) = app
        .call(
            Method::PUT,
            &format!("/api/v1/tenants/{name}/backup-policy"),
            Some(json!({"schedule": "0 4 * * 0", "retention_days": 7, "encryption": false})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let plain = backup(&app, &name).await;
    assert_eq!(plain["encrypted"], false);
    let pid = plain["id"].as_str().unwrap();
    let (s, report) = verify(&app, pid).await;
    assert_eq!(
        (s, report["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{report}"
    );
    let object = store_dir()
        .await
        .join(format!("{}/{pid}.bqb", t["id"].as_str().unwrap()));
    let mut bytes = std::fs::read(&object).unwrap();
    assert!(bytes.starts_with(b"PGDMP"));
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&object, &bytes).unwrap();
    let (s, e) = restore_backup(&app, &name, pid, None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "backup_corrupt", "{e}");
    assert_eq!(snapshot(&t).await, before);

    // A backup that fails: its schema dropped behind berqenas's back.
    let pg = superuser().await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    pg.batch_execute(&format!("DROP SCHEMA \"{stem}\" CASCADE"))
        .await
        .unwrap();
    let (s, _) = app
        .call(
            Method::POST,
            &format!("/api/v1/tenants/{name}/backups"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    let (_, listed) = list_backups(&app, &name).await;
    let failed = &listed["backups"][0];
    assert_eq!(failed["status"], "failed");
    assert!(
        failed["error"].as_str().unwrap().contains("pg_dump"),
        "{failed}"
    );
    let counted = count(
        &pg,
        "SELECT count(*) FROM berqenas.backups WHERE status = 'failed' AND tenant_name = $1",
        &[&name],
    )
    .await;
    assert_eq!(counted, 1);
    let audited = audit_count(&pg, &name, "backup_failed").await;
    assert_eq!(audited, 1);
    let no_partial = std::fs::read_dir(store_dir().await.join(t["id"].as_str().unwrap()))
        .unwrap()
        .all(|e| !e.unwrap().file_name().to_string_lossy().contains("partial"));
    assert!(no_partial);
}

/// Checksums hash each row by its columns' own hash functions where every column type
/// has one, and fall back to the row's text where one does not (`json`, `point`); the
/// manifest records which, and verify takes the same one again.
#[tokio::test]
async fn checksums_fall_back_to_text_for_types_without_a_hash() {
    let app = TestApp::spawn().await;
    let name = unique("sums");
    let t = create(&app, &name, "schema").await;
    fill(&t, 3).await;
    let stem = format!("tenant_{}", name.replace('-', "_"));
    superuser()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {stem}.odd (j json, p point, n numeric);
             ALTER TABLE {stem}.odd OWNER TO {stem}_owner;
             INSERT INTO {stem}.odd VALUES ('{{\"a\": 1}}', point(1, 2), 1.50), (NULL, NULL, 2);"
        ))
        .await
        .unwrap();
    let b = backup(&app, &name).await;
    let method = |table: &str| {
        b["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == table)
            .map(|t| {
                (
                    t["rows"].as_i64().unwrap(),
                    t["method"].as_str().unwrap().to_string(),
                )
            })
            .unwrap()
    };
    assert_eq!(method("applications"), (3, "record".to_string()), "{b}");
    assert_eq!(method("odd"), (2, "text".to_string()), "{b}");
    let (s, report) = verify(&app, b["id"].as_str().unwrap()).await;
    assert_eq!(
        (s, report["ok"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{report}"
    );
}
