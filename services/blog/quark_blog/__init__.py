"""The blog module of the Quark station: posts, comments, reactions, moderation, search and timelines."""
