import os as _os

__version__ = "0.1.0"

# OpenMP threads that wait for work sleep instead of spinning on a core that another program
# (or the other training thread) needs; beside a busy core, spinning collapsed training
# speed (issue 24, ml/threads.py). The OpenMP runtime reads this once, when torch loads it,
# so it is set here, before any DenseStudio module imports torch. A value set by the user wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
