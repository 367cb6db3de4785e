from quark_sdk.db import run_migrations_env
from quark_user.models import Base

run_migrations_env(Base.metadata)
