//! The database driver modules a config loads (`db_sqlite`, `db_postgres`,
//! `db_mysql`, SER 0.8.8's `mysql`).  The drivers are built into the DB
//! layer and chosen by `db_url`, so loading one only states intent; loading
//! a driver this build lacks warns at start-up (its URLs fail on use).

use crate::iface::{Module, ModuleEnv};

/// A database driver module.
pub struct DbDriver {
    name: &'static str,
    built: bool,
}

/// `db_sqlite`.
pub static DB_SQLITE: DbDriver = DbDriver {
    name: "db_sqlite",
    built: true,
};
/// `db_postgres`.
pub static DB_POSTGRES: DbDriver = DbDriver {
    name: "db_postgres",
    built: cfg!(feature = "postgres"),
};
/// `db_mysql`.
pub static DB_MYSQL: DbDriver = DbDriver {
    name: "db_mysql",
    built: cfg!(feature = "mysql"),
};
/// `mysql` (SER 0.8.8 name).
pub static MYSQL: DbDriver = DbDriver {
    name: "mysql",
    built: cfg!(feature = "mysql"),
};

impl Module for DbDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn init(&self, _env: &ModuleEnv) -> Result<(), String> {
        if !self.built {
            log::warn!(
                "{}: this driver is not built into ser; its db_url values will fail",
                self.name
            );
        }
        Ok(())
    }
}
