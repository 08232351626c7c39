"""The baselines PRACTISE is compared with that are more than a ranking criterion: L1
filter pruning with Torch-Pruning (``channel_pruning.py``; ``pip install torch-pruning``).
Baseline ranking criteria (random, largest latency, cosine) are user-selectable and live
with PRACTISE's in ``practise.criteria``."""
