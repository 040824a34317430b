"""raytrain: run and compare image-classification experiments (facial emotion recognition first)
as Ray Tune sweeps. See README.md; `raytrain --help` lists the commands."""

__version__ = "0.1.0"
