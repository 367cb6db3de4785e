from quark_moderation.models import Base
from quark_sdk.db import run_migrations_env

run_migrations_env(Base.metadata)
