"""Quark messaging service: conversations, messages over REST and WebSocket, notifications."""
