//! auth_db and usrloc (db_mode 1) against a real MySQL-compatible server: a
//! throwaway MariaDB in a temp dir (mariadb-install-db + mariadbd with
//! `--skip-grant-tables`, as user `mysql` when run as root) on 127.0.0.1
//! and a free port.  Skipped, with a message, when the server binaries are
//! not installed (`apt-get install -y mariadb-server`) or ser-modules is
//! built without its `mysql` feature.

mod support;

use ser_modules::db;
use support::mariadb::Server;
use support::registrar_db::auth_and_write_through;

#[test]
fn auth_and_write_through_usrloc_on_mysql() {
    let Some(my) = Server::start() else { return };
    db::with(
        &format!("mysql://root@127.0.0.1:{}/mysql", my.port()),
        |c| c.batch("CREATE DATABASE ser"),
    )
    .expect("create database");
    auth_and_write_through(&my.url(), "mysql");
}
