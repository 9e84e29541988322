//! auth_db and usrloc (db_mode 1) against a real PostgreSQL: a throwaway
//! cluster in a temp dir (initdb + pg_ctl, as user `postgres` when run as
//! root) on 127.0.0.1 and a free port.  Skipped, with a message, when the
//! PostgreSQL server binaries are not installed (`apt-get install -y
//! postgresql`).

mod support;

use support::pg::Cluster;
use support::registrar_db::{auth_and_write_through, credentials, nonce_of, register, run};

#[test]
fn auth_and_write_through_usrloc_on_postgresql() {
    let Some(pg) = Cluster::start() else { return };
    let (s, nonce) = auth_and_write_through(&pg.url(), "postgres");

    // Database down: an error reply (500), not a crash; back up: reconnects.
    assert!(pg.pg("stop"));
    let r = run(&s, register("alice", 4, &credentials(&nonce, "secret")));
    assert_eq!(r.status(), vec![500]);
    assert!(pg.pg("start"));
    let r = run(&s, register("alice", 5, ""));
    assert_eq!(r.status(), vec![401]);
    let nonce = nonce_of(&r.header("WWW-Authenticate")[0]);
    let r = run(&s, register("alice", 6, &credentials(&nonce, "secret")));
    assert_eq!(r.status(), vec![200], "reconnected after the restart");
}
