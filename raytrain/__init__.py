"""raytrain: run and compare image-classification experiments (facial emotion recognition first)
as Ray Tune sweeps. See README.md; `raytrain --help` lists the commands; ARCHITECTURE.md shows
which package runs in which process."""

__version__ = "0.2.0"  # 0.2: packages by process (ARCHITECTURE.md); 0.1 module paths in moved.py

from raytrain import moved

moved.install()  # old module paths (raytrain.sweep, ...) still load what sweeps before 0.2 pickled
