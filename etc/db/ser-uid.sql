-- SER 3.0 (uid schema) attribute tables read by avp_db (uid_user_attrs,
-- uid_uri_attrs), domain attrs (uid_domain_attrs) and gflags
-- (uid_global_attrs).  type 0 = int, 2 = string; flags bit 0 (1) = load
-- into SER.  Plain SQL: SQLite, MySQL and PostgreSQL accept it.
CREATE TABLE IF NOT EXISTS uid_user_attrs (
    uid VARCHAR(64) NOT NULL,
    name VARCHAR(32) NOT NULL,
    value VARCHAR(128),
    type INTEGER DEFAULT 0 NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT userattrs_idx UNIQUE (uid, name, value)
);

CREATE TABLE IF NOT EXISTS uid_uri_attrs (
    username VARCHAR(64) NOT NULL,
    did VARCHAR(64) NOT NULL,
    name VARCHAR(32) NOT NULL,
    value VARCHAR(128),
    type INTEGER DEFAULT 0 NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    scheme VARCHAR(8) DEFAULT 'sip' NOT NULL,
    CONSTRAINT uriattrs_idx UNIQUE (username, did, name, value, scheme)
);

CREATE TABLE IF NOT EXISTS uid_domain_attrs (
    did VARCHAR(64),
    name VARCHAR(32) NOT NULL,
    type INTEGER DEFAULT 0 NOT NULL,
    value VARCHAR(128),
    flags INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT domain_attr_idx UNIQUE (did, name, value)
);

CREATE TABLE IF NOT EXISTS uid_global_attrs (
    name VARCHAR(32) NOT NULL,
    type INTEGER DEFAULT 0 NOT NULL,
    value VARCHAR(128),
    flags INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT global_attrs_idx UNIQUE (name, value)
);

-- SER acc_db accounting (the SER flavour of the `acc` / `missed_calls`
-- tables; Kamailio's acc module uses different columns, see acc.sql: a
-- database holds one flavour).
CREATE TABLE IF NOT EXISTS acc (
    id INTEGER PRIMARY KEY,
    from_uid VARCHAR(64),
    to_uid VARCHAR(64),
    to_did VARCHAR(64),
    from_did VARCHAR(64),
    sip_from VARCHAR(255),
    sip_to VARCHAR(255),
    sip_status VARCHAR(128),
    sip_method VARCHAR(16),
    in_ruri VARCHAR(255),
    from_uri VARCHAR(255),
    to_uri VARCHAR(255),
    sip_callid VARCHAR(255),
    sip_cseq INTEGER,
    from_tag VARCHAR(128),
    to_tag VARCHAR(128),
    src_ip VARCHAR(64),
    src_port INTEGER,
    request_timestamp TIMESTAMP NOT NULL,
    response_timestamp TIMESTAMP NOT NULL,
    flags INTEGER
);

CREATE TABLE IF NOT EXISTS missed_calls (
    id INTEGER PRIMARY KEY,
    from_uid VARCHAR(64),
    to_uid VARCHAR(64),
    to_did VARCHAR(64),
    from_did VARCHAR(64),
    sip_from VARCHAR(255),
    sip_to VARCHAR(255),
    sip_status VARCHAR(128),
    sip_method VARCHAR(16),
    in_ruri VARCHAR(255),
    from_uri VARCHAR(255),
    to_uri VARCHAR(255),
    sip_callid VARCHAR(255),
    sip_cseq INTEGER,
    from_tag VARCHAR(128),
    to_tag VARCHAR(128),
    src_ip VARCHAR(64),
    src_port INTEGER,
    request_timestamp TIMESTAMP NOT NULL,
    response_timestamp TIMESTAMP NOT NULL,
    flags INTEGER
);
