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


def test_a_fer_csv_whose_header_starts_with_a_utf8_bom_loads(tmp_path, run_cli, monkeypatch):
    import numpy as np
    from data_fixtures import fer_csv_text

    monkeypatch.setenv("RAYTRAIN_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    rows = [(i % 7, rng.integers(0, 256, 16), usage) for usage in ("Training", "PublicTest") for i in range(70)]
    csv = tmp_path / "fer2013.csv"
    csv.write_text(fer_csv_text(rows), encoding="utf-8-sig")  # as Excel saves "CSV UTF-8"
    assert csv.read_bytes().startswith(b"\xef\xbb\xbfemotion,")
    result = run_cli("data", "check", csv)
    assert result.code == 0, result.err
    assert "FER2013 csv" in result.out and "images:  4x4" in result.out
