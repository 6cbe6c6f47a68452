__version__ = "0.1.0"

# OpenMP's wait policy is left alone (no OMP_WAIT_POLICY=PASSIVE): measured on a 2-core AMD EPYC
# (tests/benchmarks/bench_load.py), passive waiting cost a third of the quiet training speed
# (68 vs 100 img/s) and gained nothing beside a busy core once training's threads follow the
# free cores (ml/threads.py CpuShare: 61.8 vs 61.5 img/s, 28 before).
