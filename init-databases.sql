-- Quark: one database and one least-privilege login role per service (DESIGN §2, §1).
--
-- Run once by the postgres image on an empty data directory (mounted into
-- /docker-entrypoint-initdb.d/, executed with `psql -v ON_ERROR_STOP=1`), or by hand:
--     QUARK_AUTH_DB_PASSWORD=... psql -v ON_ERROR_STOP=1 -f init-databases.sql postgres://postgres@host/postgres
--
-- This is a psql script: each role's password comes from the environment of psql
-- (`\getenv`, psql 15+) — QUARK_<SERVICE>_DB_PASSWORD — so no secret is written here.
-- A missing variable stops the script with an error naming it.
--
-- What each role gets, and nothing more:
--   * LOGIN, no SUPERUSER / CREATEDB / CREATEROLE / REPLICATION / BYPASSRLS, not a member of any role;
--   * ownership of its own database (so it can run its own migrations), and so of that
--     database's `public` schema (owned by pg_database_owner since PostgreSQL 15);
--   * CONNECT on no other database: CONNECT and TEMPORARY are revoked from PUBLIC on every
--     service database (and on `postgres`), so a service cannot even open another's database.
--
-- Database names are the module names (`quark_sdk.app.QuarkModule.database_name`); roles are quark_<name>.
-- tests/fleet/test_init_databases.py runs this file against a real PostgreSQL and checks all of the above.

\set ON_ERROR_STOP on
SET client_min_messages = warning;

-- Nobody but the superuser connects to the maintenance database or the templates.
REVOKE CONNECT, TEMPORARY ON DATABASE postgres FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE template1 FROM PUBLIC;

-- ------------------------------------------------------------------ hub
\getenv quark_password QUARK_HUB_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_HUB_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_HUB_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_hub WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "hub" WITH OWNER quark_hub ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "hub" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "hub" TO quark_hub;

-- ------------------------------------------------------------------ auth
\getenv quark_password QUARK_AUTH_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_AUTH_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_AUTH_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_auth WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "auth" WITH OWNER quark_auth ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "auth" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "auth" TO quark_auth;

-- ------------------------------------------------------------------ user
\getenv quark_password QUARK_USER_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_USER_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_USER_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_user WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "user" WITH OWNER quark_user ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "user" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "user" TO quark_user;

-- ------------------------------------------------------------------ media
\getenv quark_password QUARK_MEDIA_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_MEDIA_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_MEDIA_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_media WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "media" WITH OWNER quark_media ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "media" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "media" TO quark_media;

-- ------------------------------------------------------------------ blog
\getenv quark_password QUARK_BLOG_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_BLOG_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_BLOG_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_blog WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "blog" WITH OWNER quark_blog ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "blog" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "blog" TO quark_blog;

-- ------------------------------------------------------------------ messaging
\getenv quark_password QUARK_MESSAGING_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_MESSAGING_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_MESSAGING_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_messaging WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "messaging" WITH OWNER quark_messaging ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "messaging" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "messaging" TO quark_messaging;

-- ------------------------------------------------------------------ ai
\getenv quark_password QUARK_AI_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_AI_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_AI_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_ai WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "ai" WITH OWNER quark_ai ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "ai" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "ai" TO quark_ai;

-- ------------------------------------------------------------------ mailer
\getenv quark_password QUARK_MAILER_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_MAILER_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_MAILER_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_mailer WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "mailer" WITH OWNER quark_mailer ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "mailer" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "mailer" TO quark_mailer;

-- ------------------------------------------------------------------ moderation
\getenv quark_password QUARK_MODERATION_DB_PASSWORD
\if :{?quark_password}
\else
  \warn 'init-databases.sql: QUARK_MODERATION_DB_PASSWORD is not set'
  DO $$ BEGIN RAISE EXCEPTION 'environment variable QUARK_MODERATION_DB_PASSWORD is not set'; END $$;
\endif
CREATE ROLE quark_moderation WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT 100 PASSWORD :'quark_password';
\unset quark_password
CREATE DATABASE "moderation" WITH OWNER quark_moderation ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE "moderation" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE "moderation" TO quark_moderation;
