"""The auth module of the Quark station: identity, tokens and sessions for every other module."""
