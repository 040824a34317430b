"""raytrain: run and compare image-classification experiments (facial emotion recognition first)
as Ray Tune sweeps. See README.md; `raytrain --help` lists the commands."""

__version__ = "0.1.0"

from raytrain import moved

moved.install()  # old module paths (raytrain.sweep, ...) still load what sweeps before 0.2 pickled
