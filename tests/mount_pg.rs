//! `pg_restore` reading a custom-format dump straight from a `cairn mount`: the dump goes into the
//! repository through `backup --stdin`, and `pg_restore --list` and `pg_restore -t TABLE` (which
//! seek about the file) read it from the mount into a throwaway PostgreSQL 15 cluster.

use std::process::Stdio;

use crate::mount::Mount;
use crate::support::TestRepo;
use crate::support::pg_cluster_mount::PgCluster;

#[test]
fn pg_restore_lists_and_restores_one_table_from_a_dump_on_the_mount() {
    let pg = PgCluster::start();
    pg.sql("postgres", "CREATE DATABASE source");
    pg.sql(
        "source",
        "CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
         INSERT INTO accounts SELECT g, 'owner ' || g, (g * 7919 % 100000) / 100.0 FROM generate_series(1, 200000) g;
         CREATE TABLE events (id bigint PRIMARY KEY, payload bytea);
         INSERT INTO events SELECT g, sha256(g::text::bytea) FROM generate_series(1, 50000) g;",
    );
    let expected =
        pg.sql("source", "SELECT count(*), sum(balance), md5(string_agg(owner, ',' ORDER BY id)) FROM accounts");

    // pg_dump -Fc | cairn backup --stdin
    let repo = TestRepo::new();
    let mut dump = pg.client("pg_dump").args(["-Fc", "-d", "source"]).stdout(Stdio::piped()).spawn().expect("pg_dump");
    let mut backup = repo
        .cairn_std()
        .args(["backup", "--stdin", "--stdin-filename", "source.dump", "--quiet"])
        .stdin(dump.stdout.take().expect("pg_dump output"))
        .spawn()
        .expect("cairn backup --stdin");
    assert!(dump.wait().expect("pg_dump").success(), "pg_dump failed");
    assert!(backup.wait().expect("cairn backup").success(), "cairn backup --stdin failed");

    let at = repo.scratch("mnt");
    let _mount = Mount::start(&repo, &at);
    let snap = at.join("snapshots/latest");
    let file = std::fs::read_dir(&snap)
        .expect("list the snapshot")
        .map(|e| e.expect("entry").path())
        .find(|p| p.file_name().is_some_and(|n| n == "source.dump"))
        .unwrap_or_else(|| panic!("source.dump is not in {}", snap.display()));

    let list = pg.client("pg_restore").arg("--list").arg(&file).output().expect("pg_restore --list");
    assert!(list.status.success(), "pg_restore --list: {}", String::from_utf8_lossy(&list.stderr));
    let toc = String::from_utf8_lossy(&list.stdout);
    assert!(toc.contains("TABLE public accounts") && toc.contains("TABLE DATA public accounts"), "{toc}");
    assert!(toc.contains("TABLE public events"), "{toc}");

    pg.sql("postgres", "CREATE DATABASE scratch");
    let restore = pg
        .client("pg_restore")
        .args(["-t", "accounts", "-d", "scratch", "--exit-on-error"])
        .arg(&file)
        .output()
        .expect("pg_restore -t");
    assert!(restore.status.success(), "pg_restore -t accounts: {}", String::from_utf8_lossy(&restore.stderr));
    assert_eq!(
        pg.sql("scratch", "SELECT count(*), sum(balance), md5(string_agg(owner, ',' ORDER BY id)) FROM accounts"),
        expected,
        "the restored table holds the source's rows"
    );
    assert_eq!(pg.sql("scratch", "SELECT count(*) FROM pg_tables WHERE tablename = 'events'"), "0", "only -t accounts");
}
