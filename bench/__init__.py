"""Benchmarks of the card lookup worker, each measured against a baseline in the same run.

Run `python -m bench --help` for the commands. Every benchmark starts the
processes it measures (simulator, worker, baselines) on 127.0.0.1, uses topics
unique to the run on the local broker, and prints a table of figures and ratios.
"""
