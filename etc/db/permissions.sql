-- Kamailio permissions tables (`address` for allow_source_address /
-- allow_address, `trusted` for allow_trusted), column-compatible with
-- Kamailio's schema.  Plain SQL: SQLite, MySQL and PostgreSQL accept it.
CREATE TABLE IF NOT EXISTS address (
    id INTEGER PRIMARY KEY,
    grp INTEGER DEFAULT 1 NOT NULL,
    ip_addr VARCHAR(50) NOT NULL,
    mask INTEGER DEFAULT 32 NOT NULL,
    port SMALLINT DEFAULT 0 NOT NULL,
    tag VARCHAR(64)
);

CREATE TABLE IF NOT EXISTS trusted (
    id INTEGER PRIMARY KEY,
    src_ip VARCHAR(50) NOT NULL,
    proto VARCHAR(4) NOT NULL,
    from_pattern VARCHAR(64) DEFAULT NULL,
    ruri_pattern VARCHAR(64) DEFAULT NULL,
    tag VARCHAR(64),
    priority INTEGER DEFAULT 0 NOT NULL
);
CREATE INDEX IF NOT EXISTS trusted_peer_idx ON trusted (src_ip);
