"""The user module of the Quark station: profiles, social graph, avatars, activity, search."""
