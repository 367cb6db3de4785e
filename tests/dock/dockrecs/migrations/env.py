from quark_sdk.db import run_migrations_env, service_metadata

run_migrations_env(service_metadata())
