#!/bin/sh
# Runs once, when the `bank` PostgreSQL initialises its data directory (docker-entrypoint-initdb.d):
# the gateway's service role `hoop_svc` and the `bank` database it owns. The tables and rows come
# next, from the `bank-seed` service (src/demo/bank.ts, the same bank as `hoop demo`).
# HOOP_KEYS_DIR: another place for the keys, for test/deploy/deploy.test.ts.
set -e   # (no -u: the postgres entrypoint sources a script that is not executable)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v svc_password="$(cat "${HOOP_KEYS_DIR:-/keys}/bank-db/hoop_svc.password")" <<'SQL'
SET password_encryption = 'scram-sha-256';
CREATE ROLE hoop_svc LOGIN PASSWORD :'svc_password';
CREATE DATABASE bank OWNER hoop_svc;
SQL
