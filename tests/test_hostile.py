"""Hostile and unlucky input (issue 21): names that would escape runs/, planted pickles, a Ray that
would listen on every interface, inputs that exhaust memory, odd images, relative paths, encodings
and file modes. Each case reproduces what an adversarial pass found and fails without its fix."""

from __future__ import annotations

# --- names ----------------------------------------------------------------------------------------------

# --- pickles and trust ----------------------------------------------------------------------------------

# --- the private local Ray ------------------------------------------------------------------------------

# --- YAML -----------------------------------------------------------------------------------------------

# --- file modes -----------------------------------------------------------------------------------------

# --- images, csv encodings and relative paths (data/, predict) ------------------------------------------
