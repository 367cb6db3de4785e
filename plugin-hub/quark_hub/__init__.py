"""Quark Plugin Hub: the docking node every module registers with (DESIGN §4)."""
