"""The anatomy of a tuned run's weight update: ΔW's spectrum, effective rank, relative size and
intruder dimensions, measured one matrix at a time."""
