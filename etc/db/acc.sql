-- Kamailio accounting tables (acc module: `acc`, `missed_calls`), with the
-- extra columns kamailio-3.1.cfg's log_extra/db_extra name (its ACCDB_COMMENT
-- block adds them with ALTER TABLE).  Plain SQL: SQLite, MySQL and PostgreSQL accept it.
CREATE TABLE IF NOT EXISTS acc (
    id INTEGER PRIMARY KEY,
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(64) DEFAULT '' NOT NULL,
    to_tag VARCHAR(64) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP NOT NULL,
    src_user VARCHAR(64) DEFAULT '' NOT NULL,
    src_domain VARCHAR(128) DEFAULT '' NOT NULL,
    dst_ouser VARCHAR(64) DEFAULT '' NOT NULL,
    dst_user VARCHAR(64) DEFAULT '' NOT NULL,
    dst_domain VARCHAR(128) DEFAULT '' NOT NULL
);
CREATE INDEX IF NOT EXISTS acc_callid_idx ON acc (callid);

CREATE TABLE IF NOT EXISTS missed_calls (
    id INTEGER PRIMARY KEY,
    method VARCHAR(16) DEFAULT '' NOT NULL,
    from_tag VARCHAR(64) DEFAULT '' NOT NULL,
    to_tag VARCHAR(64) DEFAULT '' NOT NULL,
    callid VARCHAR(255) DEFAULT '' NOT NULL,
    sip_code VARCHAR(3) DEFAULT '' NOT NULL,
    sip_reason VARCHAR(128) DEFAULT '' NOT NULL,
    time TIMESTAMP NOT NULL,
    src_user VARCHAR(64) DEFAULT '' NOT NULL,
    src_domain VARCHAR(128) DEFAULT '' NOT NULL,
    dst_ouser VARCHAR(64) DEFAULT '' NOT NULL,
    dst_user VARCHAR(64) DEFAULT '' NOT NULL,
    dst_domain VARCHAR(128) DEFAULT '' NOT NULL
);
CREATE INDEX IF NOT EXISTS missed_calls_callid_idx ON missed_calls (callid);

